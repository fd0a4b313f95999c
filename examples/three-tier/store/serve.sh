#!/bin/sh
# The store tier: nc runs this for each connection; it reads one command and answers one line.
#   PING        -> PONG
#   GET KEY     -> the number stored under KEY (0 when none)
#   INCR KEY    -> adds one to it and answers the new number
# Numbers live in /data, a named volume: they outlive the container.
read -r command key
case "$key" in
  '' | *[!A-Za-z0-9_-]*) key= ;;
esac
value() { cat "/data/$key" 2>/dev/null || echo 0; }
case "$command" in
  PING) echo PONG ;;
  GET) [ -n "$key" ] && value || echo "ERR key" ;;
  INCR)
    if [ -n "$key" ]; then
      n=$(($(value) + 1))
      echo "$n" > "/data/$key.new" && mv "/data/$key.new" "/data/$key"
      echo "$n"
    else
      echo "ERR key"
    fi
    ;;
  *) echo "ERR unknown command" ;;
esac

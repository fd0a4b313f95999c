#!/bin/sh
# The app tier's page (httpd runs cgi-bin/index.cgi for "/"): counts this visit in the store,
# found by its service name, and says which visit it was.
count=$(echo "INCR visits" | timeout 2 nc "${STORE:-store}" 7000)
case "$count" in
  '' | *[!0-9]*)
    printf 'Status: 503 Service Unavailable\r\nContent-Type: text/plain\r\n\r\n'
    echo "the app could not reach the store"
    ;;
  *)
    printf 'Content-Type: text/plain\r\n\r\n'
    echo "Hello from the app ($(hostname)): visit number $count, counted by the store."
    ;;
esac

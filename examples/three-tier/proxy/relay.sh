#!/bin/sh
# The proxy tier: nc runs this for each connection it accepts, with the connection as stdin
# and stdout; the app, found by its service name, gets the bytes both ways.
exec nc "${APP:-app}" 80

#!/bin/sh
# A per-request responder in shell: read the text, answer it word by word in capitals.
#   hscd --exec 'sh examples/responders/shout.sh'
for word in $(cat); do
    printf '%s ' "$word" | tr '[:lower:]' '[:upper:]'
    sleep 0.2
done
echo

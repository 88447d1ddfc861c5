#!/bin/bash
# A pool worker in shell (docs/responder-protocol.md): each request's text back in capitals.
#   hscd --pool 2 --exec 'bash examples/responders/upper-worker.sh'
while read -r kind len; do
    payload=$(head -c "$len")
    [ "$kind" = request ] || continue
    piece=$(printf '%s' "$payload" | tr a-z A-Z)
    printf 'piece %d\n%s' "$(printf '%s' "$piece" | wc -c)" "$piece"
    printf 'end 0\n'
done

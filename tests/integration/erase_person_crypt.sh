#!/usr/bin/env bash
# erase_person_crypt: erase_person on an encrypted repository (issue 17: erasure works on
# encrypted repositories too). See erase_person.sh.
ERASE_CRYPT=1 exec bash "$(dirname "$0")/erase_person.sh"

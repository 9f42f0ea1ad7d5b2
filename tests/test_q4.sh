#!/usr/bin/env bash
# End-to-end q4 (4-bit weights, model_convert/FORMAT.md): tests/test_q8.sh's checks with --dtype q4 and
# the default mixed-precision policy (see its header). Ends with "RESULT <passed> <failed>".
exec "$(dirname "$0")/test_q8.sh" q4

"""python -m course_lib.recipes NAME: retrain one shipped checkpoint (see course_lib.recipes.runner.main)."""

import sys

from course_lib.recipes.runner import main

main(sys.argv[1:])

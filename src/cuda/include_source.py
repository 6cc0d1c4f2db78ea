#!/usr/bin/env python3
"""Writes OUTPUT, a one-line source file that #includes INPUT (see meson.build)."""
import os
import sys

with open(sys.argv[2], "w", encoding="utf-8") as out:
    out.write('#include "%s"\n' % os.path.abspath(sys.argv[1]))

"""The project's user errors: one root, `SupremError`, whose str() is one line naming the argument
or file and the problem.

The command-line tools turn a `SupremError` (and the OS errors a user causes: a full disk, an
unwritable folder, a file they named that is not there) into `prog: error: <one line>`; any other
exception is a bug and keeps its traceback. Each subclass also inherits the builtin exception it
stands for, so `except ValueError` and `except FileNotFoundError` keep catching it.

A reading site that calls a library (SimpleITK, nibabel, pydicom, nnunetv2) on a user's file
catches the library's error there and raises one of these naming the file::

    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as e:
        raise InputError(f"{path}: cannot be read as an image ({e})") from e
"""
from __future__ import annotations


class SupremError(Exception):
    """A problem of the user's input (an argument, a file, a dataset, a model): str() is one line."""


class InputError(SupremError, ValueError):
    """A bad argument, file content, dataset, plan or configuration."""


class MissingFileError(SupremError, FileNotFoundError):
    """A file, folder, dataset or model the user named (or one it needs) is not there."""


class OutputExistsError(SupremError, FileExistsError):
    """An output the command would write is already there (and is not overwritten without being asked)."""


class UnsupportedError(SupremError, NotImplementedError):
    """Something the user asked for that this installation or this input cannot do."""


class EnvironmentProblem(SupremError, RuntimeError):
    """The machine cannot do what was asked (no CUDA GPU for --device cuda)."""

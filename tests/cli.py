"""The user-error contract of the command lines, for the tests of each one."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest


def one_line_error(capsys, main: Callable[[list[str]], object], argv: Sequence[object], status: int = 2) -> str:
    """The one line ``main(argv)`` prints on stderr as it exits with ``status``, checked to be one line and no
    traceback. A progress bar started before the error is erased with carriage returns, leaving no line: the text
    after the last one is the error."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert exit_.value.code == status, err
    assert "Traceback" not in err and err.count("\n") == 1 and err.endswith("\n"), err
    return err.rstrip("\n").rsplit("\r", 1)[-1]

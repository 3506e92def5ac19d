"""Environment failures as one line: the families a user's machine raises (credentials, disk, encodings, services).

`environment_failure(err)` walks the exception and its causes and returns one line naming the file or URL and
what went wrong, or None for anything else (a bug, which keeps its traceback). Classes of third-party libraries
are matched by their (module, name) so that nothing here imports them.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator

CREDENTIALS_HINT = "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"
DISK_ERRNOS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
               errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
               errno.EPERM: "operation not permitted", errno.ENAMETOOLONG: "file name too long",
               errno.ELOOP: "too many levels of symbolic links"}


def _chain(err: BaseException) -> Iterator[BaseException]:
    """The exception, then its causes and contexts (each once; Ray's task errors keep theirs in `cause`)."""
    seen: set[int] = set()
    while isinstance(err, BaseException) and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__ or getattr(err, "cause", None)


def _named(err: BaseException, *names: str) -> bool:
    """Whether a class in err's MRO has one of `names` ('module-prefix:Class' or 'Class')."""
    for cls in type(err).__mro__:
        for name in names:
            module, _, cls_name = name.rpartition(":")
            if cls.__name__ == cls_name and cls.__module__.startswith(module):
                return True
    return False


def _first_line(err: BaseException) -> str:
    return next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)


def _disk(err: BaseException) -> str | None:
    if isinstance(err, OSError) and err.errno in DISK_ERRNOS:
        where = err.filename or "output"
        return f"{where}: {DISK_ERRNOS[err.errno]}"
    return None


def _credentials(err: BaseException) -> str | None:
    if _named(err, "botocore:NoCredentialsError", "botocore:PartialCredentialsError"):
        return f"S3: {_first_line(err)} ({CREDENTIALS_HINT})"
    if _named(err, "botocore:EndpointConnectionError", "botocore:ConnectTimeoutError"):
        return f"S3: {_first_line(err)}"
    return None


def _text(err: BaseException) -> str | None:
    if isinstance(err, UnicodeDecodeError):
        return f"not UTF-8 text: {err.reason} at byte {err.start} (expected a text file such as a YAML or CSV)"
    if isinstance(err, OverflowError):
        return f"a number is out of range: {_first_line(err)}"
    if isinstance(err, ValueError) and str(err) == "embedded null byte":  # os.stat and open() on a name with \0
        return "a path holds a NUL byte (\\x00): no file can have that name"
    return None


def _image(err: BaseException) -> str | None:
    if _named(err, "PIL:DecompressionBombError"):
        return f"image refused: {_first_line(err)}"
    return None


def _tracking(err: BaseException) -> str | None:
    if _named(err, "mlflow:MlflowException", "requests:ConnectionError", "sqlalchemy:OperationalError"):
        return f"MLflow: {_first_line(err)}"
    return None


FAMILIES: tuple[Callable[[BaseException], str | None], ...] = (_credentials, _disk, _image, _text, _tracking)


def environment_failure(err: BaseException) -> str | None:
    """One line for an environment failure anywhere in err's chain of causes; None when it is none of them."""
    for link in _chain(err):
        for family in FAMILIES:
            if (line := family(link)) is not None:
                return line
    return None

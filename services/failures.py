"""Environment failures (credentials, disk, encodings, services) as one line; third-party classes matched by name."""

from __future__ import annotations

import errno
import re
from collections.abc import Iterator

from services.errors import is_user_error

SQLITE_FULL = "database or disk is full"  # SQLite's message for a full disk (under a line of SQLAlchemy's)
CREDENTIALS_HINT = "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"
DISK_ERRNOS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
               errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
               errno.EPERM: "operation not permitted", errno.ENAMETOOLONG: "file name too long",
               errno.ELOOP: "too many levels of symbolic links"}
S3_KEYS_REFUSED = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"}  # every request
S3_REFUSED = S3_KEYS_REFUSED | {"AccessDenied", "403"}  # error codes of S3's refusals ("403": a HEAD's)
FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}  # a full disk (or quota): waiting or retrying frees no space
SHARED_ERRNOS = FULL_ERRNOS | {errno.EROFS}  # a disk's state, not one file's
# botocore's errors for AWS settings no request could pass (a profile AWS_PROFILE names that does not exist, a
# malformed region or ~/.aws/config), and for credentials it could not fetch (an expired SSO login, a failing
# credential_process): every S3 request fails alike
AWS_SETTINGS = tuple(f"botocore:{name}" for name in (
    "ProfileNotFound", "ConfigParseError", "ConfigNotFound", "InvalidConfigError", "InvalidRegionError",
    "NoRegionError", "InvalidS3AddressingStyleError", "InvalidRetryConfigurationError", "InvalidProxiesConfigError",
    "InvalidDefaultsMode", "UnknownCredentialError"))
AWS_SIGN_IN = tuple(f"botocore:{name}" for name in (
    "CredentialRetrievalError", "SSOError", "TokenRetrievalError", "LoginError", "RefreshWithMFAUnsupportedError"))
AWS_SETTINGS_HINT = "check AWS_PROFILE, AWS_REGION or AWS_DEFAULT_REGION, and ~/.aws/config"


def _chain(err: BaseException) -> Iterator[BaseException]:
    """The exception, then its causes and contexts, nearest first, each once (Ray's task errors keep the task's
    exception in `cause`, beside a context of Ray's own; Ray Train's, the workers' or the controller's)."""
    seen: set[int] = set()
    todo = [err]
    while todo:
        err = todo.pop(0)
        if isinstance(err, BaseException) and id(err) not in seen:
            seen.add(id(err))
            yield err
            todo += [err.__cause__, err.__context__, getattr(err, "cause", None),
                     getattr(err, "controller_failure", None), *getattr(err, "worker_failures", {}).values()]


def _named(err: BaseException, *names: str) -> bool:
    """Whether a class in err's MRO has one of `names` ('module-prefix:Class' or 'Class')."""
    return any(cls.__name__ == name.rpartition(":")[2] and cls.__module__.startswith(name.rpartition(":")[0])
               for cls in type(err).__mro__ for name in names)


def _s3_refusal(err: BaseException) -> dict:
    """The `Error` (Code, Message) of an S3 request refused for its credentials or permissions (a botocore
    ClientError); {} for any other error."""
    error = (getattr(err, "response", None) or {}).get("Error", {})
    return error if _named(err, "botocore:ClientError") and error.get("Code") in S3_REFUSED else {}


def first_line(err: BaseException) -> str:
    """The first non-blank line of err's message (its class name when there is none)."""
    return next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)


def one_line(err: BaseException) -> str:
    """The exception's message on one line (a multi-line message is joined with ' | ')."""
    return " | ".join(line.strip() for line in str(err).splitlines() if line.strip()) or type(err).__name__


def _line(err: BaseException) -> str | None:
    """One line for `err` itself if it is of a known family (checked in this order), else None."""
    if _named(err, "botocore:NoCredentialsError", "botocore:PartialCredentialsError"):
        return f"S3: {first_line(err)} ({CREDENTIALS_HINT})"
    if _named(err, "botocore:EndpointConnectionError", "botocore:ConnectTimeoutError"):
        return f"S3: {first_line(err)}"
    if _named(err, *AWS_SETTINGS):
        return f"S3: {first_line(err).rstrip('.')} ({AWS_SETTINGS_HINT})"
    if _named(err, *AWS_SIGN_IN):
        return f"S3: no credentials: {first_line(err).rstrip(': .')} (sign in again, or {CREDENTIALS_HINT})"
    if refusal := _s3_refusal(err):
        return (f"S3 refused access: {refusal.get('Message') or refusal['Code']} (check the credentials: "
                f"{CREDENTIALS_HINT}, and the bucket's permissions)")
    if isinstance(err, OSError) and err.errno in DISK_ERRNOS:
        named = isinstance(err.filename, str) and "\n" not in err.filename  # Ray Data writes its retry note there
        return f"{err.filename}: {DISK_ERRNOS[err.errno]}" if named else DISK_ERRNOS[err.errno]
    if _named(err, "ray:OutOfDiskError"):  # Ray refuses objects it would have to spill past 95% disk use
        return ("a Ray node's disk is over 95% full, where its object store spills (free space there, or raise "
                "RAY_local_fs_capacity_threshold)")
    if out_of_memory(err):
        tried = re.search(r"tried to allocate (\d+) bytes", str(err))  # PyTorch's CPU allocator says it so
        what = f"could not allocate {int(tried[1]) / 2**30:,.1f} GiB" if tried else first_line(err)
        return f"out of memory: {what} (a smaller batch, frame size or model needs less)"
    if _named(err, "PIL:DecompressionBombError"):
        return f"image refused: {first_line(err)}"
    if isinstance(err, UnicodeDecodeError):
        return f"not UTF-8 text: {err.reason} at byte {err.start} (expected a text file such as a YAML or CSV)"
    if isinstance(err, OverflowError):
        return f"a number is out of range: {first_line(err)}"
    if isinstance(err, ValueError) and str(err) == "embedded null byte":  # os.stat and open() on a name with \0
        return "a path holds a NUL byte (\\x00): no file can have that name"
    if _named(err, "mlflow:MlflowException", "requests:ConnectionError", "sqlalchemy:OperationalError"):
        full = SQLITE_FULL in str(err)
        return f"MLflow: the tracking store's disk is full ({SQLITE_FULL})" if full else f"MLflow: {first_line(err)}"
    return None


stopped_for: list[str] = []  # why stop_main stopped the main thread, if it did: a fault, not the user's Ctrl-C


def stop_main(reason: str) -> None:
    """From another thread (a watcher that found a fault), stop the main thread as SIGTERM would (Ctrl-C where
    SIGTERM has no Python handler): its clean-up runs, and the stage's line and MLflow run give `reason`."""
    import _thread
    import signal

    stopped_for[:] = [reason]
    _thread.interrupt_main(signal.SIGTERM if callable(signal.getsignal(signal.SIGTERM)) else signal.SIGINT)


def out_of_memory(err: BaseException) -> bool:
    """Python's, NumPy's or PyTorch's allocation failure (CPU or GPU), or a task Ray killed for its node's memory."""
    return (isinstance(err, MemoryError) or _named(err, "torch:OutOfMemoryError", "ray:OutOfMemoryError")
            or (isinstance(err, RuntimeError) and "can't allocate memory" in str(err)))


def environment_failure(err: BaseException) -> str | None:
    """One line for an environment failure anywhere in err's chain of causes; None when it is none of them."""
    line = next((line for link in _chain(err) if (line := _line(link)) is not None), None)
    if line in DISK_ERRNOS.values() and (path := _task_file(err, line)):  # a disk error that names no file
        return f"{path}: {line}"
    return line


def _task_file(err: BaseException, line: str) -> str | None:
    """The file a Ray task's disk error (`line`) named, read from the task's traceback that Ray keeps in its error's
    text: Ray Data raises the task's error again with its retry note where the file's name was."""
    code = next(number for number, message in DISK_ERRNOS.items() if message == line)
    named = re.compile(rf"^\w+: \[Errno {code}\] [^\n]*?: (?:'([^'\n]+)'|\"([^\"\n]+)\")$", re.M)
    found = [a or b for link in _chain(err) if _named(link, "ray:RayTaskError") for a, b in named.findall(str(link))]
    return found[-1] if found else None


def s3_credentials_problem() -> str | None:
    """Why botocore finds no S3 credentials here (none set, a profile that is not there, a sign-in that fails), in
    one line; None where it finds some (whether S3 takes them is S3's to say)."""
    import botocore.exceptions
    import botocore.session

    try:
        if botocore.session.get_session().get_credentials() is None:
            return f"no S3 credentials ({CREDENTIALS_HINT})"
    except botocore.exceptions.BotoCoreError as err:
        return environment_failure(err) or f"S3: {first_line(err)}"
    return None


def why(err: BaseException) -> str:
    """Why `err` happened, in one line: its environment failure's line, else the first line of the error at its root
    (a Ray Train run's: its controller's or its first failed worker's own; a Ray task's: its cause), else its own."""
    if line := environment_failure(err):
        return line
    failures = getattr(err, "worker_failures", None) or {}
    root = (getattr(err, "controller_failure", None) or next(iter(failures.values()), None)
            or getattr(err, "cause", None))
    return first_line(root if isinstance(root, BaseException) else err)


def user_error_line(err: BaseException) -> str | None:
    """One line for the user error (services.errors) that `err` is, or carries from a Ray task or a Ray Train worker
    (a bad input found there, such as a corrupt checkpoint to resume from, is still the user's); None if neither.
    A carried one gives its first line: Ray Data appends its retry notes to the message."""
    # a Ray task's error is of its cause's class too (RayTaskError(UserError)): the cause itself has the message
    user = next((link for link in _chain(err) if is_user_error(link) and not is_user_error(getattr(link, "cause", None))),
                None)
    if user is None:
        return None
    return one_line(user) if user is err else first_line(user)


def every_task_fails(err: BaseException) -> bool:
    """Whether every later task would fail as `err` did (a full, over-quota or read-only disk, Ray's too; no S3
    credentials, AWS settings no request passes, or keys S3 refuses; no S3 endpoint): a batch stops on it instead of
    recording the same failure for each item."""
    return any((isinstance(link, OSError) and link.errno in SHARED_ERRNOS)
               or _named(link, "botocore:NoCredentialsError", "botocore:PartialCredentialsError",
                         "botocore:EndpointConnectionError", "ray:OutOfDiskError", *AWS_SETTINGS, *AWS_SIGN_IN)
               or _s3_refusal(link).get("Code") in S3_KEYS_REFUSED
               for link in _chain(err))

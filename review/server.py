"""Install, start, stop and health-check a local Label Studio server for reviewers.

Label Studio runs from its own virtualenv (`.venv-ls`, pinned version) so its large
dependency tree never mixes with the pipeline's. It binds to 127.0.0.1 only. On first start
an admin account and a legacy API token are created unattended; the password and the token
live in 0600 files in the data directory and reach the child process through its
environment only, never a command line or a log. The data directory (database, token,
pid file, log) survives restarts.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from pipeline.errors import ServiceError, UsageError
from pipeline.run.paths import make_folder

LABEL_STUDIO_VERSION = "1.23.2"
# sentry-sdk 3 rejects an option Label Studio 1.23.2 passes (send_default_pii): it would exit at start-up.
LABEL_STUDIO_REQUIREMENTS = (f"label-studio=={LABEL_STUDIO_VERSION}", "sentry-sdk<3")
REPO_ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
DEFAULT_PORT = 8090
USERNAME = "reviewer@census.local"
INSTALL_TIMEOUT_S = 1800
START_TIMEOUT_S = 600
STOP_TIMEOUT_S = 30


class ServerInfo(BaseModel):
    """What `serve` started, kept as DATA_DIR/server.json for `stop`, `push` and `status`."""

    url: str
    port: int
    pid: int
    data_dir: str
    document_root: str
    username: str = USERNAME


def default_data_dir() -> Path:
    """CENSUS_LS_DATA_DIR, else ~/.local/share/census/label-studio."""
    configured = os.environ.get("CENSUS_LS_DATA_DIR")
    return Path(configured) if configured else Path.home() / ".local/share/census/label-studio"


def venv_dir() -> Path:
    return Path(os.environ.get("CENSUS_LS_VENV", REPO_ROOT / ".venv-ls"))


def executable(venv: Path | None = None) -> Path:
    return (venv or venv_dir()) / "bin" / "label-studio"


def ensure_installed(venv: Path | None = None) -> Path:
    """Install label-studio==LABEL_STUDIO_VERSION into `venv` unless already there; return its executable."""
    venv = venv or venv_dir()
    stamp = venv / f".label-studio-{LABEL_STUDIO_VERSION}-sentry-sdk-below-3"  # an older install is redone
    if stamp.exists() and executable(venv).exists():
        return executable(venv)
    print(f"installing label-studio=={LABEL_STUDIO_VERSION} into {venv} (takes minutes, once)",
          file=sys.stderr)
    try:
        if not (venv / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *LABEL_STUDIO_REQUIREMENTS],
                       check=True, timeout=INSTALL_TIMEOUT_S)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as error:
        raise ServiceError(f"could not install Label Studio into {venv}: {error}; "
                           "check network access to PyPI and retry `make review-install`") from error
    stamp.touch()
    return executable(venv)


def _secret_file(path: Path, make_secret: Callable[[], str]) -> str:
    """Read a secret from a 0600 file, creating it (owner-only from the first byte) if missing."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(make_secret())
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)
    return path.read_text().strip()


def token_path(data_dir: Path) -> Path:
    return Path(data_dir) / "api-token"


def password_path(data_dir: Path) -> Path:
    return Path(data_dir) / "admin-password"


def read_token(data_dir: Path | None = None) -> str:
    """The API token: CENSUS_LS_TOKEN if set, else the 0600 file of the data directory."""
    if os.environ.get("CENSUS_LS_TOKEN"):
        return os.environ["CENSUS_LS_TOKEN"]
    path = token_path(data_dir or default_data_dir())
    if not path.exists():
        raise ServiceError(f"no Label Studio API token in {path}; start the server with `census review serve` "
                           "or set CENSUS_LS_TOKEN")
    return path.read_text().strip()


def _credentials(data_dir: Path) -> tuple[str, str]:
    """(password, token), created on first use; a legacy token is 40 hex characters."""
    password = _secret_file(password_path(data_dir), lambda: secrets.token_urlsafe(18))
    token = _secret_file(token_path(data_dir), lambda: secrets.token_hex(20))
    return password, token


def _info_path(data_dir: Path) -> Path:
    return Path(data_dir) / "server.json"


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # Like the server itself, ignore connections of a previous run lingering in TIME_WAIT.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def answers(url: str, token: str | None = None, timeout: float = 5) -> bool:
    """True when Label Studio answers at `url` (and, given a token, accepts it)."""
    import httpx

    try:
        if token is None:
            return httpx.get(f"{url}/health", timeout=timeout).status_code == 200
        response = httpx.get(f"{url}/api/current-user/whoami", timeout=timeout,
                             headers={"Authorization": f"Token {token}"})
        return response.status_code == 200
    except httpx.HTTPError:
        return False


def _is_label_studio(pid: int) -> bool:
    """Guard against a recycled pid: only ever signal a process that runs label-studio."""
    import psutil

    try:
        return any("label-studio" in part for part in psutil.Process(pid).cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def running(data_dir: Path | None = None) -> ServerInfo | None:
    """The server started from this data directory, if it is still alive and answering."""
    path = _info_path(data_dir or default_data_dir())
    if not path.exists():
        return None
    info = ServerInfo.model_validate_json(path.read_text())
    if _is_label_studio(info.pid) and answers(info.url):
        return info
    return None


def _child_environment(data_dir: Path, document_root: Path, password: str, token: str) -> dict[str, str]:
    environment = dict(os.environ)
    environment.update({
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        "LABEL_STUDIO_USERNAME": USERNAME,
        "LABEL_STUDIO_PASSWORD": password,
        "LABEL_STUDIO_USER_TOKEN": token,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(document_root),
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        "LABEL_STUDIO_COLLECT_ANALYTICS": "false",
    })
    return environment


def _reuse(info: ServerInfo, document_root: Path) -> ServerInfo:
    if not document_root.is_relative_to(info.document_root):
        raise ServiceError(f"Label Studio is already running at {info.url} serving files under "
                           f"{info.document_root}, not {document_root}; run `census review stop` and serve again")
    return info


def start(data_dir: Path | None = None, port: int = DEFAULT_PORT, document_root: Path | None = None,
          timeout: float = START_TIMEOUT_S) -> ServerInfo:
    """Start Label Studio on 127.0.0.1:`port` (or return the one already running from `data_dir`)."""
    data_dir = Path(data_dir or default_data_dir()).resolve()
    make_folder(data_dir, "--data-dir")
    document_root = Path(document_root or Path.cwd()).resolve()
    if not document_root.is_dir():
        raise UsageError(f"document root {document_root} is not a directory")
    existing = running(data_dir)
    if existing:
        return _reuse(existing, document_root)
    # Label Studio silently moves to another port when its port is busy: refuse instead.
    if not port_is_free(port):
        raise ServiceError(f"port {port} on {HOST} is already in use by another program; "
                           "choose another with --port")
    program = ensure_installed()
    password, token = _credentials(data_dir)
    url = f"http://{HOST}:{port}"
    with open(data_dir / "server.log", "ab") as log:
        process = subprocess.Popen(
            [str(program), "start", "--internal-host", HOST, "--port", str(port), "--no-browser",
             "--data-dir", str(data_dir)],
            env=_child_environment(data_dir, document_root, password, token),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    _wait_until_ready(process, url, token, data_dir, timeout)
    info = ServerInfo(url=url, port=port, pid=process.pid, data_dir=str(data_dir),
                      document_root=str(document_root))
    _info_path(data_dir).write_text(info.model_dump_json(indent=1))
    return info


def _wait_until_ready(process: subprocess.Popen, url: str, token: str, data_dir: Path, timeout: float) -> None:
    """Poll until the server answers on our port and accepts our token; kill it on failure."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServiceError(f"Label Studio exited with code {process.returncode} while starting; "
                               f"see {data_dir / 'server.log'}")
        if answers(url, token):
            return
        time.sleep(1)
    _terminate(process.pid)
    raise ServiceError(f"Label Studio did not answer with our token at {url} within {timeout:.0f} s; "
                       f"see {data_dir / 'server.log'}")


def _terminate(pid: int) -> None:
    """SIGTERM the server's process group, SIGKILL it if it lingers."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        _reap(pid)
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.killpg(pid, signal.SIGKILL)


def _reap(pid: int) -> None:
    """Collect our own exited child, so that its zombie does not look alive."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def stop(data_dir: Path | None = None) -> bool:
    """Stop the server started from `data_dir`; False when none was running."""
    path = _info_path(data_dir or default_data_dir())
    if not path.exists():
        return False
    info = ServerInfo.model_validate_json(path.read_text())
    alive = _is_label_studio(info.pid)
    if alive:
        _terminate(info.pid)
    path.unlink()
    return alive


def login_hint(info: ServerInfo) -> str:
    """How a reviewer logs in; the password itself is never printed."""
    return (f"Label Studio is running at {info.url}\n"
            f"log in as {info.username}; the password is in {password_path(Path(info.data_dir))} (0600)\n"
            f"stop it with `census review stop --data-dir {info.data_dir}`")

"""Docker for the compat tests (test_docker.py): the engine, images built from nothing, compose
projects and containers, and a kcat that runs inside the compose network.

Nothing is pulled from a registry:
  * the engine is Debian's docker.io (20.10) with Debian's docker-compose (1.29, the Python one),
    both installed by setup.sh; when `docker info` fails, `ensure_engine` starts dockerd itself
    (vfs storage, no iptables: it works inside a sandbox; FJORD_DOCKERD_ARGS to change that) and
    waits until `docker info` answers. The daemon keeps running after the tests.
  * the base images the Dockerfile names (debian:bookworm-slim, rust:1.95-slim-bookworm) are, when
    missing, one image made with `debootstrap --variant=minbase bookworm` (Debian's mirror, less
    its package cache, lists, docs and locales) and `docker import`, tagged with both names;
  * fjord:latest is the repository's Dockerfile built from the repository root with
    `--build-arg FJORD_PREBUILT=target/docker/fjord` (FJORD_BIN less its debug sections), again
    only when the image's label says it holds another binary or another Dockerfile;
  * fjord-compat-app:latest is FROM scratch: the host's kcat, dash (as /bin/sh) and sleep with
    the shared libraries `ldd` lists, at their paths, so a container on a compose network is a
    Kafka client there (a few MB: on vfs every container's creation copies its whole image).
Images are prepared under a file lock, so two pytest-xdist workers do it once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

COMPAT_DIR = Path(__file__).resolve().parent
REPO = COMPAT_DIR.parent
COMPOSE_DIR = COMPAT_DIR / "docker"

FJORD_IMAGE = "fjord:latest"
APP_IMAGE = "fjord-compat-app:latest"
#: The Dockerfile's two base images (its RUNTIME_IMAGE and RUST_IMAGE defaults).
BASE_IMAGE = "debian:bookworm-slim"
RUST_IMAGE = "rust:1.95-slim-bookworm"
DEBIAN_MIRROR = os.environ.get("FJORD_DEBIAN_MIRROR", "http://deb.debian.org/debian")
DOCKERD_ARGS = os.environ.get("FJORD_DOCKERD_ARGS", "--storage-driver=vfs --iptables=false").split()
DOCKERD_LOG = Path(tempfile.gettempdir()) / "fjord-compat-dockerd.log"
#: Every compose project, container, network and volume the tests make is named PREFIX<pid>-...
PREFIX = "fjordcompat-"
#: Labels that say what an image was built from, so it is rebuilt only when that changes.
LABEL = "dev.fjord.compat.inputs"

#: The docker CLI 28 talks to the 20.10 engine with the legacy builder only (no buildx here).
ENV = {**os.environ, "DOCKER_BUILDKIT": "0", "COMPOSE_DOCKER_CLI_BUILD": "0"}

TOOLS = ("docker", "docker-compose", "debootstrap", "objcopy", "kcat", "ldd")


class DockerError(AssertionError):
    pass


def missing_tools() -> list[str]:
    return [t for t in TOOLS if shutil.which(t) is None]


def run(args, *, check=True, timeout=120, input=None, env=None) -> subprocess.CompletedProcess:
    """Runs a command with text output captured; a non-zero exit fails with its output."""
    args = [str(a) for a in args]
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout, input=input,
                       env={**ENV, **(env or {})}, stdin=None if input is not None else subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise DockerError(f"`{' '.join(args)}` exited {p.returncode}\nstdout: {p.stdout[-3000:]}\n"
                          f"stderr: {p.stderr[-3000:]}")
    return p


def docker(*args, **kw) -> subprocess.CompletedProcess:
    return run(["docker", *args], **kw)


@contextlib.contextmanager
def file_lock(name: str):
    """A lock across processes (pytest-xdist workers): /tmp/fjord-compat-docker-NAME.lock."""
    path = Path(tempfile.gettempdir()) / f"fjord-compat-docker-{name}.lock"
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# ------------------------------------------------------------------------------------- engine

def engine_up() -> bool:
    try:
        return run(["docker", "info"], check=False, timeout=20).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def ensure_engine(timeout_s: float = 90):
    """Starts dockerd (nohup, its log in DOCKERD_LOG) unless `docker info` already works, and
    waits for `docker info` to answer."""
    if engine_up():
        return
    if os.geteuid() != 0:
        raise DockerError("the Docker engine is not running and only root can start it (dockerd)")
    with open(DOCKERD_LOG, "ab") as log:
        log.write(f"\n===== fjord-compat: dockerd {' '.join(DOCKERD_ARGS)}\n".encode())
        log.flush()
        proc = subprocess.Popen(["nohup", "dockerd", *DOCKERD_ARGS], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout_s
    while not engine_up():
        if proc.poll() is not None:
            raise DockerError(f"dockerd exited with {proc.returncode}; its log: {DOCKERD_LOG}\n"
                              + DOCKERD_LOG.read_text(errors="replace")[-3000:])
        if time.monotonic() > deadline:
            raise DockerError(f"`docker info` still fails {timeout_s}s after starting dockerd; log: {DOCKERD_LOG}")
        time.sleep(0.5)


# ------------------------------------------------------------------------------------- images

def image_exists(ref: str) -> bool:
    return run(["docker", "image", "inspect", ref], check=False).returncode == 0


def image_label(ref: str, label: str = LABEL) -> str | None:
    p = run(["docker", "image", "inspect", "-f", f'{{{{index .Config.Labels "{label}"}}}}', ref], check=False)
    return p.stdout.strip() if p.returncode == 0 and p.stdout.strip() not in ("", "<no value>") else None


def image_id(ref: str) -> str:
    return docker("image", "inspect", "-f", "{{.Id}}", ref).stdout.strip()


def ensure_base_images():
    """debian:bookworm-slim (and rust:1.95-slim-bookworm, the same image) from debootstrap when
    missing. An image of that name from elsewhere (a registry) is left as it is."""
    if not image_exists(BASE_IMAGE):
        build_base_image(BASE_IMAGE)
    if not image_exists(RUST_IMAGE):
        # Only its `install` runs when FJORD_PREBUILT is given; a from-source build needs the
        # real rust image.
        docker("tag", BASE_IMAGE, RUST_IMAGE)


def build_base_image(tag: str):
    """`debootstrap --variant=minbase bookworm` into a temp dir, less what the official slim image
    leaves out too (on vfs every container copies its image whole), imported as `tag`."""
    root = Path(tempfile.mkdtemp(prefix="fjord-compat-debootstrap-"))
    try:
        run(["debootstrap", "--variant=minbase", "bookworm", root, DEBIAN_MIRROR], timeout=900)
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
                     "usr/share/info", "usr/share/locale"):
            for child in (root / junk).glob("*"):
                if child.name in ("lock", "partial"):
                    continue
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        root.chmod(0o755)  # mkdtemp's 0700 would become the image's /, closed to non-root users
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        imp = subprocess.run(["docker", "import", "-", tag], stdin=tar.stdout, capture_output=True,
                             text=True, env=ENV, timeout=600)
        tar.stdout.close()
        if tar.wait() != 0 or imp.returncode != 0:
            raise DockerError(f"docker import of the debootstrap tree failed: {imp.stderr[-2000:]}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _sha256(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def ensure_fjord_image(fjord_bin: Path) -> str:
    """fjord:latest from the repository's Dockerfile and `fjord_bin`; returns its image id."""
    inputs = hashlib.sha256((_sha256(fjord_bin, REPO / "Dockerfile", REPO / ".dockerignore")
                             + image_id(BASE_IMAGE)).encode()).hexdigest()[:32]
    if image_label(FJORD_IMAGE) != inputs:
        out = REPO / "target" / "docker" / "fjord"
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f"fjord.{os.getpid()}.tmp")
        run(["objcopy", "--strip-debug", fjord_bin, tmp])
        os.replace(tmp, out)
        previous = image_id(FJORD_IMAGE) if image_exists(FJORD_IMAGE) else None
        dangling = set(_dangling_images())
        run(["docker", "build", "-q", "--build-arg", "FJORD_PREBUILT=target/docker/fjord", "--label",
             f"{LABEL}={inputs}", "-t", FJORD_IMAGE, REPO], timeout=900)
        # The legacy builder keeps the build stage as an untagged image, and the old fjord:latest
        # stays behind untagged: on vfs each costs its full size on disk. Those that no container
        # uses go (this build's only: an untagged image from before is not ours to judge).
        for stale in (set(_dangling_images()) - dangling) | ({previous} if previous else set()):
            if stale != image_id(FJORD_IMAGE):
                docker("rmi", stale, check=False)
    return image_id(FJORD_IMAGE)


def _dangling_images() -> list[str]:
    return docker("images", "-q", "--no-trunc", "-f", "dangling=true").stdout.split()


def _ldd_paths(binary: str) -> list[str]:
    out = run(["ldd", binary]).stdout
    paths = []
    for line in out.splitlines():
        parts = line.split()
        if "=>" in parts:
            target = parts[parts.index("=>") + 1]
            if target.startswith("/"):
                paths.append(target)
        elif parts and parts[0].startswith("/"):
            paths.append(parts[0])  # the loader
    return paths


def ensure_app_image() -> str:
    """fjord-compat-app:latest: FROM scratch, the host's kcat, /bin/sh (dash) and sleep with their
    shared libraries at the paths ldd names. `kcat` and `sh` are on its PATH."""
    binaries = {"/usr/bin/kcat": shutil.which("kcat"), "/bin/sh": shutil.which("dash") or "/bin/sh",
                "/bin/sleep": shutil.which("sleep")}
    libs = sorted({p for b in binaries.values() for p in _ldd_paths(b)})
    files = {**binaries, **{p: p for p in libs}}
    inputs = hashlib.sha256(json.dumps(sorted(files.items())).encode()
                            + _sha256(*map(Path, files.values())).encode()).hexdigest()[:32]
    if image_label(APP_IMAGE) == inputs:
        return image_id(APP_IMAGE)
    ctx = Path(tempfile.mkdtemp(prefix="fjord-compat-app-"))
    try:
        root = ctx / "rootfs"
        for dest, src in files.items():
            target = root / dest.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(os.path.realpath(src), target)
        (root / "etc").mkdir(exist_ok=True)
        (root / "etc" / "nsswitch.conf").write_text("hosts: files dns\n")
        (root / "tmp").mkdir()
        lib_dirs = sorted({str(Path(p).parent) for p in libs})
        (ctx / "Dockerfile").write_text(
            "FROM scratch\n"
            "COPY rootfs/ /\n"
            f"ENV PATH=/usr/bin:/bin LD_LIBRARY_PATH={':'.join(lib_dirs)}\n"
            f'LABEL {LABEL}="{inputs}"\n'
            'CMD ["sleep", "infinity"]\n')
        run(["docker", "build", "-q", "-t", APP_IMAGE, ctx], timeout=300)
    finally:
        shutil.rmtree(ctx, ignore_errors=True)
    return image_id(APP_IMAGE)


def prepare(fjord_bin: Path) -> dict[str, str]:
    """Engine, base images, fjord:latest and the app image, once across xdist workers. Returns
    the image ids."""
    with file_lock("prepare"):
        ensure_engine()
        remove_leftovers()
        ensure_base_images()
        return {FJORD_IMAGE: ensure_fjord_image(fjord_bin), APP_IMAGE: ensure_app_image()}


# --------------------------------------------------------------------------------- containers

def inspect(container: str) -> dict:
    return json.loads(docker("inspect", container).stdout)[0]


def logs(container: str) -> str:
    p = docker("logs", container, check=False)
    return p.stdout + p.stderr


def health(container: str) -> str:
    state = inspect(container)["State"]
    return (state.get("Health") or {}).get("Status", "none")


def wait_healthy(*containers: str, timeout_s: float = 90):
    """Until every container's health status is `healthy`; fails at once when one exits."""
    deadline = time.monotonic() + timeout_s
    pending = list(containers)
    while pending:
        for c in list(pending):
            state = inspect(c)["State"]
            if state["Status"] in ("exited", "dead"):
                raise DockerError(f"container {c} exited ({state['ExitCode']}) instead of becoming healthy\n"
                                  + logs(c)[-4000:])
            if (state.get("Health") or {}).get("Status") == "healthy":
                pending.remove(c)
        if not pending:
            return
        if time.monotonic() > deadline:
            raise DockerError(f"not healthy after {timeout_s}s: {pending}; last health: "
                              + json.dumps((inspect(pending[0])['State'].get('Health') or {}).get('Log', [])[-2:]))
        time.sleep(0.5)


def wait_exit(container: str, timeout_s: float = 60) -> int:
    """Until the container has exited; returns its exit code."""
    deadline = time.monotonic() + timeout_s
    while True:
        state = inspect(container)["State"]
        if state["Status"] in ("exited", "dead"):
            return state["ExitCode"]
        if time.monotonic() > deadline:
            raise DockerError(f"container {container} still {state['Status']} after {timeout_s}s "
                              f"(restarts: {inspect(container).get('RestartCount')})\n{logs(container)[-3000:]}")
        time.sleep(0.3)


def pid1_uid(container: str) -> int:
    """The real uid of the container's main process, from its /proc status."""
    status = docker("exec", container, "cat", "/proc/1/status").stdout
    line = next(l for l in status.splitlines() if l.startswith("Uid:"))
    return int(line.split()[1])


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
            return True
        except OSError:
            return False


def container_exists(name: str) -> bool:
    return docker("container", "inspect", name, check=False).returncode == 0


class Containers:
    """Containers made with `docker run` by one test; removed with their volumes at the end."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.names: list[str] = []

    def run(self, *args, name: str | None = None, detach=True) -> str:
        name = name or f"{self.prefix}-{uuid.uuid4().hex[:6]}"
        self.names.append(name)
        docker("run", *(["-d"] if detach else []), "--name", name, *args)
        return name

    def logs(self) -> dict[str, str]:
        return {n: logs(n) for n in self.names if container_exists(n)}

    def remove(self):
        for n in self.names:
            docker("rm", "-f", "-v", n, check=False)


class Compose:
    """One compose project: `docker-compose -p NAME -f FILE...` with its own variables."""

    def __init__(self, name: str, *files: Path, env: dict[str, str] | None = None, profiles=()):
        self.name = name
        self.files = [Path(f) for f in files]
        self.env = {k: str(v) for k, v in (env or {}).items()}
        self.profiles = list(profiles)
        self.app: str | None = None

    @property
    def network(self) -> str:
        return f"{self.name}_default"

    def __call__(self, *args, check=True, timeout=180) -> subprocess.CompletedProcess:
        cmd = ["docker-compose", "--ansi", "never", "-p", self.name]
        for f in self.files:
            cmd += ["-f", f]
        for p in self.profiles:
            cmd += ["--profile", p]
        return run([*cmd, *args], check=check, timeout=timeout, env=self.env)

    def up(self, *services: str, timeout=300):
        self("up", "-d", "--no-build", *services, timeout=timeout)

    def container(self, service: str) -> str:
        cid = self("ps", "-q", service).stdout.strip()
        if not cid:
            raise DockerError(f"{self.name}: no container for service {service}")
        return cid

    def logs(self) -> str:
        return self("logs", "--no-color", "--timestamps", check=False, timeout=60).stdout

    def start_app(self) -> str:
        """A long-lived fjord-compat-app container on this project's network (kcat via exec)."""
        self.stop_app()
        self.app = f"{self.name}-client"
        docker("run", "-d", "--name", self.app, "--network", self.network, APP_IMAGE)
        return self.app

    def stop_app(self):
        if self.app:
            docker("rm", "-f", self.app, check=False)
            self.app = None

    def kcat(self, *args, input: str | None = None, timeout=60) -> subprocess.CompletedProcess:
        """kcat inside the network (the app container), e.g. against `fjord:19092`."""
        assert self.app, "start_app() first"
        return docker("exec", *(["-i"] if input is not None else []), self.app, "kcat", *args, input=input,
                      timeout=timeout)

    def down(self):
        self.stop_app()
        self("down", "-v", "--remove-orphans", "-t", "5", check=False, timeout=180)


@contextlib.contextmanager
def logs_on_failure(request, *sources):
    """Attaches the logs of every compose project / Containers in `sources` to the report of a
    test that fails inside the block."""
    try:
        yield
    except BaseException:
        for s in sources:
            try:
                if isinstance(s, Compose):
                    request.node.add_report_section("call", f"docker-compose logs: {s.name}", s.logs()[-20000:])
                else:
                    for name, text in s.logs().items():
                        request.node.add_report_section("call", f"docker logs: {name}", text[-8000:])
            except Exception as e:  # noqa: BLE001 - the failure itself matters more
                request.node.add_report_section("call", "docker logs", f"could not read logs: {e!r}")
        raise


def unique_project(tag: str) -> str:
    """A compose project name (also the prefix of its containers, network and volumes) that
    carries this process's pid, so a later run can tell an abandoned one (remove_leftovers)."""
    return f"{PREFIX}{os.getpid()}-{re.sub(r'[^a-z0-9]', '', tag.lower())[:16]}-{uuid.uuid4().hex[:6]}"


def _owner(name: str) -> int | None:
    m = re.match(rf"/?{PREFIX}(\d+)-", name)
    return int(m.group(1)) if m else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def remove_leftovers():
    """Containers, networks and volumes that a test process which is gone made and did not
    remove (killed by a timeout, say): the pid in their names says whose they are. A leftover
    would keep its ports and names (and, with a restart policy, come back with the engine)."""
    def dead(names):
        return [n for n in names if (pid := _owner(n)) is not None and not _alive(pid)]

    containers = dead(docker("ps", "-a", "--format", "{{.Names}}").stdout.split())
    if containers:
        docker("rm", "-f", "-v", *containers, check=False)
    networks = dead(docker("network", "ls", "--format", "{{.Name}}").stdout.split())
    if networks:
        docker("network", "rm", *networks, check=False)
    volumes = dead(docker("volume", "ls", "--format", "{{.Name}}").stdout.split())
    if volumes:
        docker("volume", "rm", *volumes, check=False)

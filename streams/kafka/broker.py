"""A real single-node Apache Kafka broker (KRaft) on loopback, without Docker.

The jars come from Maven Central through the Maven project in ``ops/kafka`` (the package's
``streams/resources/kafka``), resolved into ``~/.m2`` with the classpath cached under
:data:`~loopline.paths.CACHE_DIR`; the broker runs as a plain ``java`` process whose pid, rendered config and log live under a data directory. Its ports are
recorded there too, so that a restart comes back on the same address with the same data, and so
that the ``loopline`` commands find it without an address (:func:`local_kafka_settings`).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from string import Template

from confluent_kafka.admin import AdminClient

from loopline.paths import CACHE_DIR, KAFKA_DIR
from loopline.settings import BrokerSettings, KafkaSettings

__all__ = ["Broker", "BrokerError", "BrokerStatus", "fetch_classpath", "local_kafka_settings"]


class BrokerError(RuntimeError):
    """The local broker can't be fetched, started, reached or stopped; the message says why."""


@dataclass(frozen=True)
class BrokerStatus:
    """What ``loopline kafka status`` reports."""

    running: bool
    pid: int | None
    bootstrap_servers: str | None
    data_dir: Path


def _require(tool: str, hint: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise BrokerError(f"`{tool}` was not found on PATH. {hint}")
    return path


JAVA_HINT = "Install a Java 17+ runtime, e.g. `apt-get install openjdk-17-jre-headless`."
MVN_HINT = "Install Apache Maven, e.g. `apt-get install maven`; it fetches Kafka from Maven Central."


def fetch_classpath(cache_dir: Path, *, refresh: bool = False) -> str:
    """Resolve the broker's jars with Maven (reusing ~/.m2) and return the classpath.

    The classpath is cached in ``cache_dir/classpath.txt`` and resolved again when a jar on it is
    gone or when ``refresh`` is set.
    """
    cache = cache_dir / "classpath.txt"
    if cache.exists() and not refresh:
        classpath = cache.read_text().strip()
        if classpath and all(Path(jar).exists() for jar in classpath.split(os.pathsep)):
            return classpath
    mvn = _require("mvn", MVN_HINT)
    cache_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        mvn, "-q", "-B", "-f", str(KAFKA_DIR / "pom.xml"), "dependency:build-classpath",
        f"-Dmdep.outputFile={cache.resolve()}", "-Dmdep.includeScope=runtime",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0 or not cache.exists():
        tail = (done.stdout + done.stderr).strip()[-2000:]
        raise BrokerError(
            "Maven could not resolve Apache Kafka from Maven Central "
            f"(is https://repo.maven.apache.org reachable?):\n{tail}"
        )
    return cache.read_text().strip()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_in_use(port: int) -> bool:
    """Whether ``port`` of 127.0.0.1 is taken by a listener (or a bound socket without SO_REUSEADDR).

    The probe sets SO_REUSEADDR as Java's server sockets do on Linux, so that a port held only by
    TIME_WAIT sockets (as right after a broker with live connections died) counts as free: the
    broker can bind it, and only a real listener would make its start fail.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited child not yet reaped) is not alive
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (FileNotFoundError, IndexError):
        return True


def _is_broker_process(pid: int) -> bool:
    """Whether the live process ``pid`` runs ``kafka.Kafka``.

    A broker killed with SIGKILL leaves its pid file behind, and the system may since have given
    that pid to an unrelated process, which must not be taken for the broker (nor be sent SIGTERM).
    Where /proc is unavailable, any live process is taken for the broker, as before.
    """
    if not Path("/proc/self/cmdline").exists():
        return True
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:  # it exited meanwhile
        return False
    except PermissionError:
        return True
    return b"kafka.Kafka" in cmdline


def metadata_answers(bootstrap_servers: str, timeout_s: float = 2.0) -> bool:
    """Whether a broker at ``bootstrap_servers`` answers a metadata request."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers, "log_level": 0})
    try:
        admin.list_topics(timeout=timeout_s)
    except Exception:
        return False
    return True


class Broker:
    """One local broker rooted at ``settings.data_dir``.

    ``start()`` formats the storage on first use, starts ``java`` detached and returns once the
    broker answers a metadata request; ``stop()`` sends SIGTERM and waits for a clean shutdown.
    """

    def __init__(self, settings: BrokerSettings) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir.resolve()
        self.pid_file = self.data_dir / "kafka.pid"
        self.log_file = self.data_dir / "kafka.log"
        self.state_file = self.data_dir / "broker.json"
        self.config_file = self.data_dir / "server.properties"
        self._proc: subprocess.Popen[bytes] | None = None  # set when this object started it

    # -- state -------------------------------------------------------------------------------

    def _state(self) -> dict[str, int | str] | None:
        if not self.state_file.exists():
            return None
        state: dict[str, int | str] = json.loads(self.state_file.read_text())
        return state

    def _pid(self) -> int | None:
        if not self.pid_file.exists():
            return None
        pid = int(self.pid_file.read_text().strip())
        return pid if _pid_alive(pid) and _is_broker_process(pid) else None

    @property
    def bootstrap_servers(self) -> str | None:
        """``127.0.0.1:<port>`` once the broker has been configured, else None."""
        state = self._state()
        return None if state is None else f"127.0.0.1:{state['port']}"

    def status(self) -> BrokerStatus:
        """Whether the broker process runs and answers, and where."""
        pid = self._pid()
        servers = self.bootstrap_servers
        running = pid is not None and servers is not None and metadata_answers(servers)
        return BrokerStatus(running, pid, servers, self.data_dir)

    # -- lifecycle ---------------------------------------------------------------------------

    def _check_port(self) -> None:
        """Refuse a port that contradicts the one the data dir's broker was created on.

        A data dir that already has a broker keeps its ports, so that a restart needs no port: only a
        port set explicitly (passed to the settings or in LOOPLINE_BROKER_PORT, not the 9092 default)
        that differs from the recorded one is refused; 0 means the recorded one then.
        """
        state = self._state()
        if state is None or "port" not in self.settings.model_fields_set:
            return
        if self.settings.port not in (0, state["port"]):
            raise BrokerError(
                f"the broker in {self.data_dir} was created on port {state['port']}, not "
                f"{self.settings.port}: use that port, or another data dir for a new broker"
            )

    def _configure(self) -> dict[str, int | str]:
        """Render the config, choosing the ports on first use and reusing the recorded ones after."""
        state = self._state()
        created = state is None
        if state is None:
            port = self.settings.port or free_port()
            controller_port = free_port()
            while controller_port == port:
                controller_port = free_port()
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            state = {"port": port, "controller_port": controller_port, "cluster_id": cluster_id}
        for key in ("port", "controller_port"):
            if _port_in_use(int(state[key])):
                hint = "choose another port (LOOPLINE_BROKER_PORT, `--port`)" if created else "use another data dir"
                raise BrokerError(
                    f"port {state[key]} on 127.0.0.1 is already in use by another process: stop it, or {hint}"
                )
        template = Template((KAFKA_DIR / "server.properties.template").read_text())
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(
            template.substitute(
                port=state["port"],
                controller_port=state["controller_port"],
                log_dirs=self.data_dir / "logs",
            )
        )
        self.state_file.write_text(json.dumps(state))
        return state

    def _java(self, classpath: str, main: str, *args: str) -> list[str]:
        java = _require("java", JAVA_HINT)
        return [
            # ZGC collects concurrently: on a machine whose cores the broker shares with its clients,
            # G1's stop-the-world pauses were seen at up to 255 ms, each one stalling every client.
            java, f"-Xmx{self.settings.heap}", "-Xms128m", "-XX:+UseZGC",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{KAFKA_DIR / 'log4j.properties'}",
            "-cp", classpath, main, *args,
        ]  # fmt: skip

    def _format_storage(self, classpath: str, cluster_id: str) -> None:
        if (self.data_dir / "logs" / "meta.properties").exists():
            return
        cmd = self._java(
            classpath, "kafka.tools.StorageTool", "format",
            f"--cluster-id={cluster_id}", "--config", str(self.config_file), "--ignore-formatted",
        )  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise BrokerError(f"formatting the broker storage failed:\n{done.stderr[-2000:]}")

    def start(self) -> str:
        """Start the broker (a no-op if it already runs) and return its bootstrap servers.

        A broker that died (even by SIGKILL, leaving its pid file behind) is started again on the
        ports and with the data it was created with.
        """
        self._check_port()
        if self._pid() is not None and self.bootstrap_servers is not None:
            if self._wait_ready(self.settings.start_timeout_s):
                return self.bootstrap_servers
            raise BrokerError(f"a broker runs with pid {self._pid()} but does not answer")
        _require("java", JAVA_HINT)
        classpath = fetch_classpath(CACHE_DIR / "kafka")
        state = self._configure()
        self._format_storage(classpath, str(state["cluster_id"]))
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(
                self._java(classpath, "kafka.Kafka", str(self.config_file)),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._proc = proc
        self.pid_file.write_text(str(proc.pid))
        servers = f"127.0.0.1:{state['port']}"
        if not self._wait_ready(self.settings.start_timeout_s, proc):
            self.stop()
            raise BrokerError(
                f"the broker did not answer on {servers} within "
                f"{self.settings.start_timeout_s:.0f}s; its log ends with:\n{self.log_tail()}"
            )
        return servers

    def _wait_ready(self, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> bool:
        servers = self.bootstrap_servers
        assert servers is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                return False
            if metadata_answers(servers, timeout_s=1.0):
                return True
            time.sleep(0.2)
        return False

    def stop(self, timeout_s: float = 60.0) -> bool:
        """Stop the broker cleanly (SIGTERM, then SIGKILL after ``timeout_s``).

        Returns False when no broker was running.
        """
        pid = self._pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _pid_alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.1)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
            while _pid_alive(pid):
                _reap(pid)
                time.sleep(0.05)
        _reap(pid)
        if self._proc is not None and self._proc.pid == pid:
            self._proc.wait()
            self._proc = None
        self.pid_file.unlink(missing_ok=True)
        return True

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the broker log."""
        if not self.log_file.exists():
            return "(no log)"
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])


def _reap(pid: int) -> None:
    """Collect the exit status of ``pid`` if it is our child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def local_kafka_settings(broker: BrokerSettings | None = None) -> KafkaSettings:
    """Kafka settings for a command run on this host: the environment's, and without an address the local broker's.

    ``loopline kafka start --port 0`` picks a free port and records it in its data dir
    (``broker``'s, by default ``LOOPLINE_BROKER_DATA_DIR``); reading it back here lets the other
    commands reach that broker without an export, instead of whatever else listens on 127.0.0.1:9092.
    An address that is set (``LOOPLINE_KAFKA_BOOTSTRAP_SERVERS``) is always used as given; with no
    broker recorded, the settings' default stands.

    Raises:
        BrokerError: the broker's state file is there but can't be read.
    """
    kafka = KafkaSettings()
    if "bootstrap_servers" in kafka.model_fields_set:
        return kafka
    local = Broker(broker or BrokerSettings())
    try:
        recorded = local.bootstrap_servers
    except (ValueError, KeyError, OSError) as exc:
        raise BrokerError(f"the local broker's state file {local.state_file} is unreadable ({exc!r})") from None
    return kafka if recorded is None else kafka.model_copy(update={"bootstrap_servers": recorded})

"""A local single-node Apache Kafka broker (KRaft, loopback only) run from Maven Central jars.

The jars are resolved once with Maven into ``$STREAM_CT_HOME/kafka-<version>/libs`` (default
``~/.stream-ct``); each broker keeps its data, log and pid under its own state directory.
Starting one takes Java and seconds, so the example is not a doctest (the tests' broker
fixture runs it)::

    broker = LocalBroker(port=19092, state_dir="/tmp/stream-ct-doc-broker")
    broker.start()   # '127.0.0.1:19092'
    broker.stop()
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.24.3"
SLF4J_VERSION = "2.0.16"
READY_LINE = "Kafka Server started"


class BrokerError(RuntimeError):
    """A broker could not be installed, started or stopped; the message says what to do."""


def stream_ct_home() -> Path:
    return Path(os.environ.get("STREAM_CT_HOME", Path.home() / ".stream-ct"))


POM_TEMPLATE = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>stream-ct</groupId><artifactId>kafka-broker-jars</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{kafka}</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>{slf4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId><version>{log4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>{log4j}</version></dependency>
  </dependencies>
</project>
"""

LOG4J_CONFIG = """status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
"""


def _require(tool: str, hint: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise BrokerError(f"{tool} not found on PATH: {hint}")
    return path


def install_jars(version: str = KAFKA_VERSION) -> Path:
    """Resolve the broker jars with Maven once; return the folder that holds them."""
    libs = stream_ct_home() / f"kafka-{version}" / "libs"
    stamp = libs / ".complete"
    if stamp.exists():
        return libs
    mvn = _require("mvn", "install Maven (apt-get install maven) to fetch Apache Kafka from Maven Central")
    _require("java", "install Java 17 or newer (apt-get install openjdk-17-jre-headless)")
    work = libs.parent
    work.mkdir(parents=True, exist_ok=True)
    (work / "pom.xml").write_text(POM_TEMPLATE.format(kafka=version, slf4j=SLF4J_VERSION, log4j=LOG4J_VERSION))
    print(f"stream-ct: fetching Apache Kafka {version} jars from Maven Central (once)...", file=sys.stderr)
    tmp = work / "libs.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    result = subprocess.run(
        [mvn, "-q", "-B", "-f", str(work / "pom.xml"), "dependency:copy-dependencies",
         f"-DoutputDirectory={tmp}"],
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        tail = (result.stdout + "\n" + result.stderr).strip().splitlines()[-5:]
        raise BrokerError("Maven could not fetch the Kafka jars: " + " | ".join(tail))
    shutil.rmtree(libs, ignore_errors=True)
    tmp.rename(libs)
    stamp.write_text(version)
    return libs


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child still answers kill(0): look at its state
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        return state != "Z"
    except OSError:
        return True


@dataclass
class LocalBroker:
    """One local broker: ``port`` for clients, ``port + 1`` for its KRaft controller."""

    port: int = 9092
    state_dir: str | None = None
    version: str = KAFKA_VERSION
    heap: str = "512m"
    ready_timeout_s: float = 120.0

    def __post_init__(self):
        self.host = "127.0.0.1"
        self.dir = Path(self.state_dir) if self.state_dir else stream_ct_home() / f"broker-{self.port}"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.dir / "broker.log"

    def _pid(self) -> int | None:
        try:
            pid = int((self.dir / "broker.pid").read_text())
        except (OSError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    def running(self) -> bool:
        return self._pid() is not None and _port_open(self.host, self.port)

    def _write_config(self) -> Path:
        data = self.dir / "data"
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{self.host}:{self.port + 1}",
            "listeners": f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.port + 1}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(data),
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "num.partitions": "1",
            # Recorded topics carry their original (old) event times: keep them.
            "log.retention.ms": "-1",
            "message.max.bytes": "2097152",
        }
        path = self.dir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.dir / "log4j2.properties").write_text(LOG4J_CONFIG)
        return path

    def start(self) -> str:
        """Start the broker unless it runs already; wait until it is ready; return bootstrap."""
        if self.running():
            return self.bootstrap
        if _port_open(self.host, self.port):
            raise BrokerError(f"port {self.port} is taken by another process: stop it or choose --port")
        java = _require("java", "install Java 17 or newer (apt-get install openjdk-17-jre-headless)")
        libs = install_jars(self.version)
        self.dir.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        classpath = f"{libs}/*"
        if not (self.dir / "data" / "meta.properties").exists():
            cluster_id = uuid.uuid4().hex[:22]
            fmt = subprocess.run(
                [java, "-cp", classpath, "kafka.tools.StorageTool", "format", "-t", cluster_id,
                 "-c", str(config)], capture_output=True, text=True)
            if fmt.returncode != 0:
                raise BrokerError(f"formatting the broker storage failed: {fmt.stderr.strip()[-300:]}")
        log = open(self.log_path, "ab")
        offset = self.log_path.stat().st_size
        proc = subprocess.Popen(
            [java, f"-Xmx{self.heap}", "-Xms128m", "-XX:+UseG1GC",
             f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
             "-cp", classpath, "kafka.Kafka", str(config)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        (self.dir / "broker.pid").write_text(str(proc.pid))
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BrokerError(f"the broker exited with code {proc.returncode}: see {self.log_path}")
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                if READY_LINE.encode() in f.read():
                    return self.bootstrap
            time.sleep(0.2)
        self.stop()
        raise BrokerError(f"the broker was not ready within {self.ready_timeout_s:.0f} s: see {self.log_path}")

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stop the broker (SIGTERM, then SIGKILL after ``timeout_s``); False if it was not running."""
        pid = self._pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
        (self.dir / "broker.pid").unlink(missing_ok=True)
        return True

    def status(self) -> str:
        pid = self._pid()
        if pid is None:
            taken = (f"; port {self.port} is taken by another process (a broker started with another --state-dir?)"
                     if _port_open(self.host, self.port) else "")
            return f"stopped (state in {self.dir}){taken}"
        ready = "ready" if _port_open(self.host, self.port) else "starting"
        return f"running pid {pid}, {ready} at {self.bootstrap} (state in {self.dir})"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "broker",
        description="Run a single-node Apache Kafka broker (KRaft) on loopback from Maven Central jars.",
        epilog="example: stream-ct broker start --port 9092",
    )
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--port", type=int, default=int(os.environ.get("STREAM_CT_BROKER_PORT", 9092)),
                        help="client port; the controller uses port+1 (default 9092 or $STREAM_CT_BROKER_PORT)")
    parser.add_argument("--state-dir", default=None, help="data, log and pid folder (default ~/.stream-ct/broker-PORT)")
    parser.set_defaults(func=_run)


def _run(args) -> int:
    broker = LocalBroker(port=args.port, state_dir=args.state_dir)
    if args.action == "start":
        print(broker.start())
    elif args.action == "stop":
        print("stopped" if broker.stop() else "not running")
    else:
        print(broker.status())
        return 0 if broker.running() else 3
    return 0

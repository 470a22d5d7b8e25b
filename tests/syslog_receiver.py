"""A real syslog receiver for the audit tests: Debian rsyslogd in the foreground with its own
configuration, listening on 127.0.0.1 for RFC 5425 (TLS, gtls driver, client certificates
required), plain TCP with octet counting (imptcp) and UDP (imudp), writing what it receives to
a file; plus the certificates it needs, made with openssl."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.processes import stop_process

RSYSLOGD = "/usr/sbin/rsyslogd"
BOM = "\ufeff"


@dataclass(frozen=True)
class Certificates:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_certificates(folder: Path) -> Certificates:
    """A test CA and a server and a client certificate it signed (both for IP 127.0.0.1)."""
    folder.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=folder)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=audit CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout", "ca.key", "-out", "ca.pem")  # fmt: skip
    for name in ("server", "client"):
        (folder / f"{name}.ext").write_text(
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
            "extendedKeyUsage=serverAuth,clientAuth\n"
        )
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.csr")  # fmt: skip
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "1", "-extfile", f"{name}.ext",
            "-out", f"{name}.pem")  # fmt: skip
    return Certificates(
        folder / "ca.pem",
        folder / "server.pem",
        folder / "server.key",
        folder / "client.pem",
        folder / "client.key",
    )


@dataclass
class Receiver:
    """A running rsyslogd: its ports and the file of received messages."""

    folder: Path
    tls_port: int
    tcp_port: int
    udp_port: int
    certs: Certificates
    process: subprocess.Popen[bytes] | None = None

    @property
    def out(self) -> Path:
        return self.folder / "received.log"

    def records(self) -> list[dict[str, str]]:
        """Each received message: input (imtcp = TLS, imptcp, imudp), app, msgid, pri, xml."""
        if not self.out.exists():
            return []
        found = []
        for line in self.out.read_text("utf-8").splitlines():
            parts = line.split(" ", 4)
            if len(parts) == 5:
                inp, app, msgid, pri, msg = parts
                found.append(
                    {"input": inp, "app": app, "msgid": msgid, "pri": pri, "xml": msg.lstrip(BOM)}
                )
        return found

    def wait_for(self, predicate, timeout: float = 15.0) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while True:
            records = self.records()
            if predicate(records) or time.monotonic() > deadline:
                return records
            time.sleep(0.1)

    def config(self) -> str:
        d, c = self.folder, self.certs
        return f"""
global(workDirectory="{d}" maxMessageSize="64k"
  DefaultNetstreamDriverCAFile="{c.ca}"
  DefaultNetstreamDriverCertFile="{c.server_cert}"
  DefaultNetstreamDriverKeyFile="{c.server_key}")
module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1"
       StreamDriver.AuthMode="x509/certvalid")
input(type="imtcp" address="127.0.0.1" port="{self.tls_port}")
module(load="imptcp")
input(type="imptcp" address="127.0.0.1" port="{self.tcp_port}")
module(load="imudp")
input(type="imudp" address="127.0.0.1" port="{self.udp_port}")
template(name="audit" type="list") {{
  property(name="inputname") constant(value=" ") property(name="app-name")
  constant(value=" ") property(name="msgid") constant(value=" ") property(name="pri")
  constant(value=" ") property(name="msg") constant(value="\\n")
}}
*.* action(type="omfile" file="{self.out}" template="audit")
"""

    def start(self) -> None:
        conf, pidfile = self.folder / "rsyslog.conf", self.folder / "rsyslogd.pid"
        conf.write_text(self.config())
        self.process = subprocess.Popen(
            [RSYSLOGD, "-n", "-f", str(conf), "-i", str(pidfile)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.folder / "rsyslogd.err", "ab"),  # noqa: SIM115
        )
        deadline = time.monotonic() + 10
        while not _listening(self.tls_port) or not _listening(self.tcp_port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((self.folder / "rsyslogd.err").read_text())
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None:
            return
        stop_process(self.process, 10)
        self.process = None


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def receiver_for(folder: Path) -> Receiver:
    """A receiver (not started) with certificates and free ports under ``folder``."""
    if not Path(RSYSLOGD).exists():
        pytest.skip("rsyslog is not installed (apt-get install rsyslog rsyslog-gnutls)")
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder.mkdir(parents=True, exist_ok=True)
    certs = make_certificates(folder / "certs")
    return Receiver(folder, free_port(), free_port(), free_port(), certs)


@contextmanager
def running_receiver(folder: Path) -> Iterator[Receiver]:
    receiver = receiver_for(folder)
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()

"""`edgecnn web-serve`: the demo site over the local network, cross-origin isolated.

Two browser rules shape this server:
- WebAssembly threads need SharedArrayBuffer, which a page only gets when it is cross-origin isolated: the
  COOP/COEP headers below, on a secure origin.
- A phone reaches this machine by its LAN address, which is a secure origin only over HTTPS; so is the
  camera (getUserMedia). Off localhost the site is served over HTTPS with a self-signed certificate made
  with openssl (the phone asks once to accept it). On plain HTTP the page still classifies photos from
  files, on one thread.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import ipaddress
import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path
from typing import Iterator, Optional

from edgecnn.util.errors import UsageError

ISOLATION_HEADERS = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp"}
CERTIFICATE_FOLDER = Path.home() / ".cache" / "edgecnn" / "web-tls"


class IsolatedHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".mjs": "text/javascript",
        ".js": "text/javascript",
        ".wasm": "application/wasm",
        ".json": "application/json",
        ".onnx": "application/octet-stream",
        ".tflite": "application/octet-stream",
        ".bin": "application/octet-stream",
    }

    def end_headers(self) -> None:
        for name, value in ISOLATION_HEADERS.items():
            self.send_header(name, value)
        self.send_header("Cache-Control", "no-cache")  # a rebuilt site is seen at once
        super().end_headers()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        pass  # a phone's requests are not news; errors reach the page


def check_site(site: Path) -> None:
    if not (site / "catalog.json").is_file() or not (site / "index.html").is_file():
        raise UsageError(f"{site} is not a built demo site (no catalog.json or index.html): make web-demo first")


def lan_address() -> str:
    """This machine's address on its default route (no packet is sent: a UDP connect only picks the route)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed anywhere real
            return probe.getsockname()[0]
        except OSError:
            return "127.0.0.1"


def self_signed_certificate(addresses: list[str], folder: Optional[Path] = None) -> tuple[Path, Path]:
    """(certificate, key) for these IP addresses, made once with openssl and reused."""
    folder = CERTIFICATE_FOLDER if folder is None else folder
    names = ",".join(["DNS:localhost"] + [f"IP:{a}" for a in addresses])
    certificate, key, record = folder / "cert.pem", folder / "key.pem", folder / "names.txt"
    if certificate.is_file() and key.is_file() and record.is_file() and record.read_text() == names:
        return certificate, key
    if shutil.which("openssl") is None:
        raise UsageError("HTTPS needs openssl to make a certificate: apt-get install openssl (or use --http)")
    folder.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "825",
            "-subj",
            "/CN=edgecnn web demo",
            "-addext",
            f"subjectAltName={names}",
            "-keyout",
            str(key),
            "-out",
            str(certificate),
        ],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise UsageError(f"openssl could not make a certificate: {result.stderr.strip().splitlines()[-1:]}")
    key.chmod(0o600)
    record.write_text(names)
    return certificate, key


def make_server(site: Path, host: str, port: int, https: bool) -> http.server.ThreadingHTTPServer:
    check_site(site)
    handler = functools.partial(IsolatedHandler, directory=str(site))
    try:
        server = http.server.ThreadingHTTPServer((host, port), handler)
    except OSError as err:
        raise UsageError(f"cannot serve on {host}:{port}: {err.strerror}") from None
    if https:
        addresses = sorted({lan_address(), "127.0.0.1"} | ({host} if _is_ip(host) and host != "0.0.0.0" else set()))
        certificate, key = self_signed_certificate(addresses)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certificate, key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    return server


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


@contextlib.contextmanager
def serving(site: Path, host: str = "127.0.0.1", port: int = 0, https: bool = False) -> Iterator[str]:
    """The site served in a background thread; yields its base URL (127.0.0.1 is a secure origin, so the
    page is cross-origin isolated over plain HTTP there)."""
    server = make_server(site, host, port, https)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{'https' if https else 'http'}://{host}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def serve_forever(site: Path, host: str, port: int, https: Optional[bool], say) -> None:
    https = host not in ("127.0.0.1", "localhost") if https is None else https
    server = make_server(site, host, port, https)
    scheme = "https" if https else "http"
    shown = lan_address() if host == "0.0.0.0" else host
    say(f"[edgecnn] serving {site} at {scheme}://{shown}:{server.server_address[1]}/ (Ctrl-C stops)")
    if https:
        say("[edgecnn] the certificate is self-signed: the phone's browser asks once to accept it")
    try:
        server.serve_forever()
    finally:
        server.server_close()

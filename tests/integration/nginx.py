"""A throwaway nginx on a loopback port for the worker's HTTP tests, plus a
server that accepts connections and never sends a reply.

    with Nginx(data_dir) as web:
        web.url("/data/tiny.txt")      # GET from data_dir
        web.url("/dav/")               # WebDAV PUT/GET/DELETE into web.dav_dir
        web.url("/error/x")            # always 500
    with StallServer() as stall:
        stall.url("/x")                # accepts, reads, never replies

nginx runs in the foreground without a master process, with its config,
logs and temporary files in a fresh directory. The listening socket is bound
by this script and handed to nginx through the NGINX environment variable
(the inherited-socket mechanism nginx uses for binary upgrades), so the port
accepts connections before nginx starts and no readiness polling is needed.
Needs Debian's nginx-light, whose http_dav_module provides PUT and DELETE.
"""

import os
import shutil
import socket
import subprocess
import threading

import harness

CONFIG = """
{user_line}
daemon off;
master_process on;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        location /data/ {{
            alias {data_dir}/;
        }}
        location /dav/ {{
            alias {dav_dir}/;
            dav_methods PUT DELETE;
            create_full_put_path on;
            dav_access user:rw;
            client_max_body_size 0;
        }}
        location /error/ {{
            return 500;
        }}
    }}
}}
"""


def _bind_loopback():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


class Nginx:
    """nginx serving data_dir under /data/, a WebDAV directory under /dav/ and
    a location /error/ that always returns 500."""

    def __init__(self, data_dir):
        exe = shutil.which("nginx") or "/usr/sbin/nginx"
        if not os.access(exe, os.X_OK):
            raise FileNotFoundError("nginx is missing; install nginx-light (tools/install_deps.sh)")
        self.dir = harness.tmp_dir("nginx-")
        self.dav_dir = os.path.join(self.dir, "dav")
        os.makedirs(self.dav_dir)
        self._sock = _bind_loopback()
        self.port = self._sock.getsockname()[1]
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w", encoding="utf-8") as f:
            # As root, nginx's workers would switch to "nobody", which cannot
            # read the 0700 temporary directories; keep them as root.
            user_line = "user root;" if os.geteuid() == 0 else ""
            f.write(CONFIG.format(user_line=user_line, dir=self.dir, port=self.port, data_dir=os.path.abspath(data_dir),
                                  dav_dir=self.dav_dir))
        fd = self._sock.fileno()
        env = dict(os.environ, NGINX=f"{fd};")
        self._stderr = open(os.path.join(self.dir, "stderr.log"), "w", encoding="utf-8")
        self.proc = subprocess.Popen(
            [exe, "-p", self.dir, "-c", conf, "-e", os.path.join(self.dir, "stderr.log")],
            stdin=subprocess.DEVNULL, stdout=self._stderr, stderr=self._stderr, env=env,
            pass_fds=(fd,))

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def error_log(self):
        with open(os.path.join(self.dir, "error.log"), encoding="utf-8", errors="replace") as f:
            return f.read()

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=harness.scaled(10))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._sock.close()
        self._stderr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class StallServer:
    """A loopback TCP server that accepts every connection, reads what the
    client sends and never writes a byte: a stalled HTTP server."""

    def __init__(self):
        self._sock = _bind_loopback()
        self.port = self._sock.getsockname()[1]
        self._conns = []
        self._closed = threading.Event()
        self.accepted = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._closed.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            self.accepted.set()

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self):
        self._closed.set()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        for conn in self._conns:
            conn.close()
        self._thread.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

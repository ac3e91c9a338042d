"""A TCP proxy for replication tests that breaks the link on command (loopback only).

  proxy = FaultProxy(("127.0.0.1", source_port)); proxy.start()
  ... the replica connects to ("127.0.0.1", proxy.port) ...
  proxy.cut()       # every connection is closed, new ones are closed at once
  proxy.restore()   # connections go through again
  proxy.stall()     # nothing more is read from the upstream (the source): its writes back up
  proxy.unstall()
  proxy.close()

Two threads per connection pump the bytes; every socket operation has a timeout, and close()
joins every thread. Counters: connections (accepted), bytes_down (upstream to client), bytes_up.
"""
import select
import socket
import threading
import time


class FaultProxy:
    def __init__(self, upstream, listen_host="127.0.0.1"):
        self.upstream = upstream
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((listen_host, 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._cut = False
        self._stalled = threading.Event()
        self._closing = False
        self._pairs = []
        self._threads = []
        self.connections = 0
        self.bytes_down = 0
        self.bytes_up = 0

    def start(self):
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def cut(self):
        with self._lock:
            self._cut = True
            pairs = list(self._pairs)
        for pair in pairs:
            self._close_pair(pair)

    def restore(self):
        with self._lock:
            self._cut = False

    def stall(self):
        self._stalled.set()

    def unstall(self):
        self._stalled.clear()

    def close(self):
        with self._lock:
            self._closing = True
            pairs = list(self._pairs)
        for pair in pairs:
            self._close_pair(pair)
        try:
            self._listener.close()
        except OSError:
            pass
        for t in list(self._threads):
            t.join(timeout=10)

    def _close_pair(self, pair):
        for s in pair:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass

    def _accept_loop(self):
        while True:
            try:
                ready, _, _ = select.select([self._listener], [], [], 0.1)
            except (OSError, ValueError):
                return
            with self._lock:
                if self._closing:
                    return
            if not ready:
                continue
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                cut = self._cut or self._closing
            if cut:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            pair = (client, upstream)
            with self._lock:
                self._pairs.append(pair)
                self.connections += 1
            for src, dst, down in ((upstream, client, True), (client, upstream, False)):
                t = threading.Thread(target=self._pump, args=(pair, src, dst, down), daemon=True)
                t.start()
                self._threads.append(t)

    def _pump(self, pair, src, dst, down):
        try:
            while True:
                if down and self._stalled.is_set():
                    # Stalled: read nothing from the source, so that its socket buffers fill.
                    with self._lock:
                        if self._closing or pair not in self._pairs:
                            return
                    time.sleep(0.05)
                    continue
                ready, _, _ = select.select([src], [], [], 0.1)
                if not ready:
                    with self._lock:
                        if self._closing or pair not in self._pairs:
                            return
                    continue
                data = src.recv(65536)
                if not data:
                    break
                dst.settimeout(30)
                dst.sendall(data)
                with self._lock:
                    if down:
                        self.bytes_down += len(data)
                    else:
                        self.bytes_up += len(data)
        except (OSError, ValueError):
            pass
        finally:
            with self._lock:
                if pair in self._pairs:
                    self._pairs.remove(pair)
            self._close_pair(pair)

#!/usr/bin/env python3
"""notes: a small HTTP notes service, the example of "Test your own service".

  PUT /notes/<id>   {"text": "..."}  -> 201 {"id": ...}   stored, then answered
  GET /notes/<id>                    -> 200 {"id": ..., "text": ...} | 404
  GET /notes                         -> 200 [{"id": ..., "text": ...}, ...]
  GET /health                        -> 200 ok

Notes are appended to DATA_DIR/notes.log, one JSON line each, and replayed
at start (a torn last line, from a crash mid-write, is dropped). With
--fsync, a note is on disk (os.fsync) before it is acknowledged; without
it, an acknowledged note may still sit in the page cache, where a power
loss takes it.
"""
import argparse
import json
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ID = re.compile(r"^/notes/([A-Za-z0-9_.-]+)$")


class Store:
    def __init__(self, data_dir, fsync):
        self.path = os.path.join(data_dir, "notes.log")
        self.fsync = fsync
        self.lock = threading.Lock()
        self.notes = {}
        if os.path.exists(self.path):
            with open(self.path, "rb") as f:
                for line in f:
                    try:
                        note = json.loads(line)
                    except ValueError:
                        break  # a torn tail
                    self.notes[note["id"]] = note["text"]
        self.log = open(self.path, "ab")

    def put(self, note_id, text):
        line = json.dumps({"id": note_id, "text": text}).encode() + b"\n"
        with self.lock:
            self.log.write(line)
            self.log.flush()  # into the kernel: survives a crash of this process
            if self.fsync:
                os.fsync(self.log.fileno())  # onto the disk: survives a power loss
            self.notes[note_id] = text


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def answer(self, status, body):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self):
        match = ID.match(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if not match:
            return self.answer(404, {"error": "no such resource"})
        try:
            text = json.loads(body)["text"]
        except (ValueError, KeyError, TypeError):
            return self.answer(400, {"error": "expected {\"text\": ...}"})
        self.server.store.put(match.group(1), text)
        self.answer(201, {"id": match.group(1)})

    def do_GET(self):
        store = self.server.store
        if self.path == "/health":
            return self.answer(200, b"ok")
        if self.path == "/notes":
            with store.lock:
                notes = [{"id": i, "text": t} for i, t in store.notes.items()]
            return self.answer(200, notes)
        match = ID.match(self.path)
        if match and match.group(1) in store.notes:
            return self.answer(200, {"id": match.group(1), "text": store.notes[match.group(1)]})
        self.answer(404, {"error": "no such note"})


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--fsync", action="store_true", help="fsync each note before acknowledging it")
    a = p.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    server.daemon_threads = True
    server.handle_error = lambda request, address: None  # a client that hung up
    server.store = Store(a.data_dir, a.fsync)
    server.serve_forever()


if __name__ == "__main__":
    main()

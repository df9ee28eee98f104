"""The smallest Flask app, for corral's Flask examples (waitress, gunicorn, granian)."""
import os

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.get("/")
def index():
    return jsonify(
        hello="flask",
        pid=os.getpid(),
        worker=os.environ.get("CORRAL_WORKER"),
        client=request.headers.get("X-Forwarded-For"),
    )


@app.get("/health")
def health():
    return "ok\n"

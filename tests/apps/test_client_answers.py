"""What a framework's own test client answers, for `tests/python_worker.rs` to hold corral's
worker to: `python test_client_answers.py flask|django REQUESTS_JSON`, run in the example's
directory, where REQUESTS_JSON is a list of [method, path]. Prints a JSON list of
{status, headers (lower-case names), body (latin-1 text)}."""

import json
import sys


def flask_answers(requests):
    from app import app

    client = app.test_client()
    out = []
    for method, path in requests:
        response = client.open(path, method=method)
        out.append({
            "status": response.status_code,
            "headers": {k.lower(): v for k, v in response.headers.items()},
            "body": response.get_data().decode("latin-1"),
        })
    return out


def django_answers(requests):
    import app  # noqa: F401  (configures settings)
    from django.test import Client

    client = Client()
    out = []
    for method, path in requests:
        response = client.generic(method, path)
        body = b"" if response.streaming else response.content
        out.append({
            "status": response.status_code,
            "headers": {k.lower(): v for k, v in response.headers.items()},
            "body": body.decode("latin-1"),
        })
    return out


if __name__ == "__main__":
    sys.path.insert(0, ".")
    requests = json.loads(sys.argv[2])
    answers = flask_answers(requests) if sys.argv[1] == "flask" else django_answers(requests)
    print(json.dumps(answers))

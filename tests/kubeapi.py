"""The few Kubernetes API calls the tests make (tests/loadtest/run, tests/helm/run), with the
credentials of $KUBECONFIG as scripts/infra/kube writes it (a server URL and a bearer token; its
certificate is self-signed)."""

import json
import os
import re
import ssl
import urllib.error
import urllib.request

_config = open(os.environ["KUBECONFIG"]).read()
SERVER = re.search(r"server: \"?([^\"}\s]+)", _config).group(1)
_TOKEN = re.search(r"token: (\S+?)\}?$", _config, re.M).group(1)
_INSECURE = ssl.create_default_context()
_INSECURE.check_hostname = False
_INSECURE.verify_mode = ssl.CERT_NONE


def get(path: str):
    """The object at `path`, or None when there is none (404)."""
    request = urllib.request.Request(SERVER + path, headers={"Authorization": f"Bearer {_TOKEN}"})
    try:
        with urllib.request.urlopen(request, context=_INSECURE, timeout=10) as answer:
            return json.load(answer)
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise


def post(path: str, body: dict) -> tuple:
    """POSTs `body`; (status, the answer's JSON)."""
    data = json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {_TOKEN}", "Content-Type": "application/json"}
    request = urllib.request.Request(SERVER + path, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, context=_INSECURE, timeout=30) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")

"""The operator's one Kubernetes API port: JSON dicts in, JSON dicts out.

Everything the operator writes outside kopf's own machinery (Deployments and their scale
subresource, Services, the InferenceService status, Events) goes through `KubeApi.request`, which
rides on the official client's transport — kubeconfig or in-cluster credentials, TLS, token
refresh — but skips its generated models: the operator renders and reads manifests as plain
dicts, exactly as the API serves them, and names the patch type of every write explicitly.

The credentials are loaded once, from an explicit path or the pod's service account, never from
the `KUBECONFIG` the `kubernetes` package captured at import. kopf logs in with the same
credentials (`connection_info()`), so the operator talks to one API server through one identity.

Calls are synchronous; the reconciler runs them with `asyncio.to_thread`. `stream` keeps an
answer open for the watches that feed the operator's caches (`informers.py`).
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
TIMEOUT_S = (5.0, 30.0)  # connect, read


class KubeApi:
    def __init__(self, configuration: client.Configuration) -> None:
        self.configuration = configuration
        self._client = client.ApiClient(configuration)

    @classmethod
    def connect(cls, kubeconfig: str | None) -> KubeApi:
        """From a kubeconfig file, or (None) from the pod's service account."""
        configuration = client.Configuration()
        if kubeconfig:
            config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        return cls(configuration)

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str = JSON,
        query: list[tuple[str, str]] | None = None,
    ) -> dict[str, Any]:
        """One API call; a non-2xx answer raises `ApiException` with the server's Status body."""
        headers = {"Accept": JSON}
        if body is not None:
            headers["Content-Type"] = content_type
        method_, url, headers_, body_, post = self._client.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or [],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self._client.call_api(
            method_, url, headers_, body_, post, _request_timeout=TIMEOUT_S
        )
        response.read()  # type: ignore[no-untyped-call]
        if not 200 <= response.status <= 299:
            raise ApiException(http_resp=response)
        data: dict[str, Any] = json.loads(response.data) if response.data else {}
        return data

    def stream(
        self, method: str, path: str, *, query: list[tuple[str, str]], read_timeout_s: float
    ) -> Any:
        """A call whose answer is read as it arrives (a watch): the open urllib3 response, to be
        read line by line and released by the caller. A non-2xx answer raises `ApiException`."""
        method_, url, headers_, body_, post = self._client.param_serialize(
            method=method,
            resource_path=path,
            query_params=query,
            header_params={"Accept": JSON},
            auth_settings=["BearerToken"],
        )
        response = self._client.call_api(
            method_, url, headers_, body_, post, _request_timeout=(TIMEOUT_S[0], read_timeout_s)
        )
        if not 200 <= response.status <= 299:
            response.read()  # type: ignore[no-untyped-call]
            raise ApiException(http_resp=response)
        return response.response

    def get(self, path: str, query: list[tuple[str, str]] | None = None) -> dict[str, Any] | None:
        """GET, with 404 as None."""
        try:
            return self.request("GET", path, query=query)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def connection_info(self) -> dict[str, Any]:
        """The credentials as keyword arguments for `kopf.ConnectionInfo`."""
        c = self.configuration
        header = c.get_api_key_with_prefix("BearerToken", alias="authorization")
        scheme, _, token = header.partition(" ") if header and " " in header else (None, "", header)
        return {
            "server": c.host,
            "ca_path": c.ssl_ca_cert,
            "insecure": not c.verify_ssl,
            "username": c.username or None,
            "password": c.password or None,
            "scheme": scheme,
            "token": token or None,
            "certificate_path": c.cert_file,
            "private_key_path": c.key_file,
        }


def error_message(exc: Exception) -> str:
    """The API server's own message from a failed call (its Status body), else the exception."""
    if isinstance(exc, ApiException):
        try:
            status = json.loads(exc.body or "")
            return f"{exc.status}: {status.get('message') or exc.reason}"
        except (ValueError, AttributeError):
            return f"{exc.status}: {exc.reason}"
    return f"{type(exc).__name__}: {exc}"

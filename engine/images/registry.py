"""Pulling images over the OCI distribution API v2: manifests and indexes, token and basic auth,
verified, resumable, parallel blob downloads into the image store.

Registries on loopback and those the caller lists as insecure are reached over plain HTTP, as
Docker does; every other registry over HTTPS only.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import anyio
import anyio.to_process
import httpx

from engine.errors import RegistryError
from engine.images.auth import Credentials, parse_challenge
from engine.images.manifest import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    Descriptor,
    digest_of,
    parse_config,
    parse_index,
    parse_manifest,
    select_platform,
)
from engine.images.reference import Reference
from engine.images.store import Image, ImageStore
from engine.linux import machine_architecture

__all__ = ["PullProgress", "RegistryClient", "uses_plain_http"]

_ACCEPT: Final = ", ".join((*MANIFEST_TYPES, *INDEX_TYPES))
_MANIFEST_LIMIT: Final = 4 << 20
_CHUNK: Final = 1 << 20
_LOCK_POLL: Final = 0.1


@dataclass(frozen=True)
class PullProgress:
    """One step of a pull, for a progress display: `status` is one of waiting, downloading,
    verifying, extracting, done, exists."""

    image: str
    digest: str
    status: str
    done: int
    total: int


ProgressCallback = Callable[[PullProgress], None]


def uses_plain_http(host: str, insecure: Collection[str]) -> bool:
    """True for a registry on loopback (127.0.0.0/8, ::1, localhost) or listed as insecure."""
    if host in insecure:
        return True
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
    name = name.strip("[]")
    if name in insecure or name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _ensure_layer(root: Path, blob: str, what: str, diff_id: str) -> None:
    """ImageStore.ensure_layer, in a worker process (see RegistryClient._layer)."""
    ImageStore(root).ensure_layer(blob, what, diff_id)


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error to report of several concurrent downloads: the first that is not a cancel."""
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            return _first(error)
        if not isinstance(error, anyio.get_cancelled_exc_class()):
            return error
    return group.exceptions[0]


class _Session:
    """Requests to one repository of one registry, answering its auth challenges once."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        ref: Reference,
        insecure: Collection[str],
        credentials: Callable[[str], Credentials | None],
    ) -> None:
        self._client = client
        self._ref = ref
        scheme = "http" if uses_plain_http(ref.registry_host, insecure) else "https"
        self._base = f"{scheme}://{ref.registry_host}/v2/{ref.path}"
        self._credentials = credentials
        self._authorization: str | None = None

    def _fail(self, what: str, response: httpx.Response) -> RegistryError:
        detail = ""
        try:
            errors = response.json().get("errors") or []
            detail = "; ".join(str(e.get("message") or e.get("code")) for e in errors)
        except (ValueError, AttributeError):
            pass
        reason = {
            401: "authentication failed",
            403: "access denied",
            404: "not found",
            429: "too many requests",
        }.get(response.status_code, f"HTTP {response.status_code}")
        suffix = f" ({detail})" if detail else ""
        return RegistryError(f"{what}: {self._ref.registry_host} answered {reason}{suffix}")

    async def _authenticate(self, response: httpx.Response, what: str) -> None:
        header = response.headers.get("www-authenticate", "")
        challenge = parse_challenge(header)
        creds = self._credentials(self._ref.domain)
        if challenge.scheme == "basic":
            if creds is None:
                raise RegistryError(
                    f"{what}: {self._ref.registry_host} requires a login; add it to "
                    "~/.docker/config.json (docker login writes it there)"
                )
            pair = f"{creds.username}:{creds.password}".encode()
            self._authorization = "Basic " + base64.b64encode(pair).decode()
            return
        if challenge.scheme != "bearer" or "realm" not in challenge.params:
            raise self._fail(what, response)
        params = {k: v for k, v in challenge.params.items() if k in ("service", "scope")}
        params.setdefault("scope", f"repository:{self._ref.path}:pull")
        auth = httpx.BasicAuth(creds.username, creds.password) if creds else None
        token_response = await self._client.get(
            challenge.params["realm"], params=params, auth=auth or httpx.USE_CLIENT_DEFAULT
        )
        if token_response.status_code != 200:
            raise self._fail(f"{what}: getting a token", token_response)
        try:
            body = token_response.json()
            token = body.get("token") or body.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str):
            raise RegistryError(f"{what}: the token service sent no token")
        self._authorization = f"Bearer {token}"

    def _headers(self, extra: dict[str, str]) -> dict[str, str]:
        headers = dict(extra)
        if self._authorization:
            headers["Authorization"] = self._authorization
        return headers

    async def get(self, path: str, what: str, headers: dict[str, str]) -> httpx.Response:
        """A small GET (manifests, configs), authenticating on a 401."""
        for _ in range(2):
            response = await self._client.get(self._base + path, headers=self._headers(headers))
            if response.status_code == 401 and self._authorization is None:
                await self._authenticate(response, what)
                continue
            if response.status_code != 200:
                raise self._fail(what, response)
            return response
        raise self._fail(what, response)

    def stream(self, path: str, headers: dict[str, str]) -> httpx.Request:
        return self._client.build_request("GET", self._base + path, headers=self._headers(headers))

    async def send(self, request: httpx.Request, what: str) -> httpx.Response:
        response = await self._client.send(request, stream=True, follow_redirects=True)
        if response.status_code == 401 and self._authorization is None:
            await response.aclose()
            await self._authenticate(response, what)
            request.headers.update(self._headers({}))
            response = await self._client.send(request, stream=True, follow_redirects=True)
        if response.status_code not in (200, 206):
            await response.aread()
            await response.aclose()
            raise self._fail(what, response)
        return response


class RegistryClient:
    """Pulls images into a store. `insecure`: registries reached over plain HTTP besides
    loopback; `credentials(domain)`: a login for a registry, or None; `unpack_in_processes`:
    unpack layers in worker processes (faster: unpacking is bound by the interpreter lock),
    or with the store's own method in threads."""

    def __init__(
        self,
        store: ImageStore,
        insecure: Collection[str] = (),
        credentials: Callable[[str], Credentials | None] = lambda _domain: None,
        parallel: int = 3,
        unpack_in_processes: bool = True,
    ) -> None:
        self._store = store
        self._insecure = insecure
        self._credentials = credentials
        self._downloads = anyio.CapacityLimiter(parallel)
        self._unpacks = anyio.CapacityLimiter(2)
        self._in_processes = unpack_in_processes

    async def pull(self, ref: Reference, progress: ProgressCallback | None = None) -> Image:
        """Pull `ref` for this machine's platform; blobs already in the store are not fetched."""
        report = progress or (lambda _event: None)
        name = ref.familiar()
        timeout = httpx.Timeout(30.0, connect=10.0)
        loopback = uses_plain_http(ref.registry_host, ())
        plain = uses_plain_http(ref.registry_host, self._insecure)
        try:
            # Plain HTTP needs no certificates: loading the CA bundle costs 20 ms a pull.
            async with httpx.AsyncClient(
                timeout=timeout, trust_env=not loopback, verify=not plain
            ) as client:
                session = _Session(client, ref, self._insecure, self._credentials)
                with self._store.writing():
                    return await self._pull(session, ref, name, report)
        except httpx.HTTPError as exc:
            raise RegistryError(
                f"pulling {name}: {ref.registry_host}: {exc or type(exc).__name__} "
                "(what was downloaded is kept; pulling again resumes)"
            ) from exc

    async def _manifest(
        self, session: _Session, reference: str, what: str, expected: str | None
    ) -> tuple[bytes, str, str]:
        response = await session.get(f"/manifests/{reference}", what, {"Accept": _ACCEPT})
        body = response.content
        if len(body) > _MANIFEST_LIMIT:
            raise RegistryError(f"{what}: the manifest is larger than 4 MiB; refused")
        digest = digest_of(body)
        if expected is not None and digest != expected:
            raise RegistryError(f"{what}: the manifest does not match its digest {expected}")
        media_type = response.headers.get("content-type", "").split(";")[0].strip()
        if media_type not in (*MANIFEST_TYPES, *INDEX_TYPES):
            try:
                media_type = str(httpx.Response(200, content=body).json().get("mediaType", ""))
            except ValueError as exc:
                raise RegistryError(f"{what}: the manifest is not JSON") from exc
        return body, digest, media_type

    async def _pull(
        self, session: _Session, ref: Reference, name: str, report: ProgressCallback
    ) -> Image:
        what = f"pulling {name}"
        body, top_digest, media_type = await self._manifest(
            session, ref.digest or ref.tag or "latest", what, ref.digest
        )
        digest = top_digest
        if media_type in INDEX_TYPES:
            chosen = select_platform(parse_index(body, what), machine_architecture(), what)
            body, digest, media_type = await self._manifest(
                session, chosen.digest, what, chosen.digest
            )
        if media_type not in MANIFEST_TYPES:
            raise RegistryError(f"{what}: unsupported manifest type {media_type!r}")
        manifest = parse_manifest(body, what)
        if not self._store.has_blob(manifest.config.digest):
            response = await session.get(f"/blobs/{manifest.config.digest}", what, {})
            self._store.put_blob(response.content, manifest.config.digest)
        config = parse_config(self._store.read_blob(manifest.config.digest), what)
        if len(config.diff_ids) != len(manifest.layers):
            raise RegistryError(f"{what}: the config and the manifest disagree on layers")
        try:
            async with anyio.create_task_group() as group:
                for layer, diff_id in zip(manifest.layers, config.diff_ids, strict=True):
                    group.start_soon(self._layer, session, layer, diff_id, name, report)
        except BaseExceptionGroup as group_error:
            raise _first(group_error) from None
        self._store.put_blob(body, digest)
        names = [ref] if ref.digest is None else []
        return self._store.add_image(digest, names, ref.with_digest(top_digest))

    async def _layer(
        self,
        session: _Session,
        layer: Descriptor,
        diff_id: str,
        name: str,
        report: ProgressCallback,
    ) -> None:
        what = f"pulling {name}: layer {layer.digest}"
        if self._store.has_layer(diff_id) and self._store.has_blob(layer.digest):
            report(PullProgress(name, layer.digest, "exists", layer.size, layer.size))
            return
        report(PullProgress(name, layer.digest, "waiting", 0, layer.size))
        async with self._downloads:
            await self._download(session, layer, name, what, report)
        report(PullProgress(name, layer.digest, "extracting", layer.size, layer.size))
        # In a worker process: unpacking is Python-bound, and in a thread it would hold the
        # interpreter lock against the downloads and the other layers.
        if self._in_processes:
            await anyio.to_process.run_sync(
                _ensure_layer, self._store.root, layer.digest, what, diff_id, limiter=self._unpacks
            )
        else:  # the store's own method, in a thread (a store that is not a plain ImageStore)
            await anyio.to_thread.run_sync(
                self._store.ensure_layer, layer.digest, what, diff_id, limiter=self._unpacks
            )
        report(PullProgress(name, layer.digest, "done", layer.size, layer.size))

    async def _download(
        self,
        session: _Session,
        layer: Descriptor,
        name: str,
        what: str,
        report: ProgressCallback,
    ) -> None:
        with self._store.partial_blob(layer.digest) as part:
            while not part.try_lock():  # another process is downloading it: wait for it
                await anyio.sleep(_LOCK_POLL)
            if self._store.has_blob(layer.digest):
                return
            if part.offset > layer.size:
                part.restart()
            if part.offset < layer.size:
                headers = {"Range": f"bytes={part.offset}-"} if part.offset else {}
                request = session.stream(f"/blobs/{layer.digest}", headers)
                response = await session.send(request, what)
                try:
                    if response.status_code == 200 and part.offset:
                        part.restart()  # the server ignored the range: start over
                    async for chunk in response.aiter_bytes(_CHUNK):
                        part.write(chunk)
                        if part.offset > layer.size:
                            raise RegistryError(
                                f"{what}: the registry sent more than {layer.size} bytes"
                            )
                        report(
                            PullProgress(name, layer.digest, "downloading", part.offset, layer.size)
                        )
                finally:
                    await response.aclose()
            report(PullProgress(name, layer.digest, "verifying", layer.size, layer.size))
            await anyio.to_thread.run_sync(part.commit, what)  # hashing and fsync: off the loop

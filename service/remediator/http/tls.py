"""The certificate HTTPS is served with, read again when its files change.

cert-manager and the kubelet renew a mounted certificate in place, well before it expires; a
replica that read it once at start would serve the old one until it expired. Every few seconds
the two files are looked at (one stat each); when they changed, the new pair is loaded into
a context of its own first, and only a pair that loads together (the key the certificate's)
replaces the one being served. New connections get it; open ones keep theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path

import structlog

from remediator.config import Settings, no_passphrase

log = structlog.get_logger(__name__)

CHECK_EVERY = 5.0  # seconds between looks at the files

_Version = tuple[tuple[int, ...], ...]


class ServedCertificate:
    def __init__(self, settings: Settings, cert_file: Path, key_file: Path) -> None:
        self._settings = settings
        self._files = (cert_file, key_file)
        self._version = self._current_version()
        context = settings.server_ssl_context()
        assert context is not None  # both files are set
        self.context = context

    @classmethod
    def of(cls, settings: Settings) -> ServedCertificate | None:
        """None when the settings serve plain HTTP."""
        if settings.tls_cert_file is None or settings.tls_key_file is None:
            return None
        return cls(settings, settings.tls_cert_file, settings.tls_key_file)

    def reload_if_changed(self) -> bool:
        """Whether a new certificate is served from now on."""
        version = self._current_version()
        if version == self._version:
            return False
        self._version = version  # a pair that does not load is reported once, not each look
        cert_file, key_file = self._files
        try:
            self._settings.server_ssl_context()  # the pair on its own: never half of it served
            self.context.load_cert_chain(cert_file, key_file, password=no_passphrase)
        except (ssl.SSLError, OSError) as exc:
            log.error(
                "new certificate not loaded: serving the one before",
                cert=str(cert_file),
                key=str(key_file),
                problem=str(exc),
            )
            return False
        log.info("certificate reloaded", cert=str(cert_file))
        return True

    async def watch(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), CHECK_EVERY)
            self.reload_if_changed()

    def _current_version(self) -> _Version:
        versions: list[tuple[int, ...]] = []
        for path in self._files:
            try:
                stat = path.stat()
                versions.append((stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size))
            except OSError:
                versions.append(())
        return tuple(versions)

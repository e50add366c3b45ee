"""[export.prometheus]: the Prometheus export's settings (``/metrics`` and the site's target
list), checked at load like every other section."""

from __future__ import annotations

from pathlib import Path

from host.config.sections import PrometheusConfig
from host.config.table import Invalid, Table

_KEYS = ("enabled", "bearer_token_file", "file_sd")
MIN_TOKEN_CHARS = 16


def read_bearer_token(path: Path) -> str:
    """The token in ``path`` (surrounding whitespace dropped); ValueError saying what to fix."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file (write the scrape token into it)") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text") from None
    if len(token) < MIN_TOKEN_CHARS or any(c.isspace() or not c.isprintable() for c in token):
        raise ValueError(
            f"{path}: expected one token of at least {MIN_TOKEN_CHARS} printable characters "
            "without spaces (e.g. the output of: openssl rand -hex 24)"
        )
    return token


def read_prometheus(raw: object, base: Path) -> PrometheusConfig:
    """The [export.prometheus] table (``raw``; {} when absent). Files are checked only when
    the export is enabled, so a disabled section can be kept in the file as an example."""
    t = Table(raw, "export.prometheus", _KEYS)
    enabled = t.boolean("enabled", True)
    token_file = t.path_value("bearer_token_file", None, base)
    if token_file is not None and enabled:
        try:
            read_bearer_token(token_file)
        except ValueError as exc:
            raise Invalid("export.prometheus.bearer_token_file", str(exc)) from None
    file_sd = t.path_value("file_sd", None, base)
    if file_sd is not None:
        if file_sd.suffix != ".json":
            raise Invalid(
                "export.prometheus.file_sd",
                f"{file_sd}: the target list is written as JSON: name it *.json "
                '(e.g. file_sd = "/etc/prometheus/smartpdu/targets.json")',
            )
        if enabled and not file_sd.parent.is_dir():
            raise Invalid(
                "export.prometheus.file_sd",
                f"{file_sd.parent}: no such folder (create it, writable by the service)",
            )
    return PrometheusConfig(enabled=enabled, bearer_token_file=token_file, file_sd=file_sd)

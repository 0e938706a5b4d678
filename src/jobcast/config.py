"""Typed settings: env (JOBCAST_*) over embedded defaults; model and threshold params from params.yaml."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobcast.errors import ConfigError
from jobcast.storage import use_digest_cache

PROJECT_MARKERS = ("dvc.yaml", "params.yaml")


def find_project_root(start: Path | None = None) -> Path:
    """JOBCAST_HOME if set, else the nearest parent of the cwd holding dvc.yaml and params.yaml."""
    env = os.environ.get("JOBCAST_HOME")
    if env:
        root = Path(env).expanduser().resolve()
        if not (root / "params.yaml").is_file():
            raise ConfigError(f"JOBCAST_HOME={env}: no params.yaml there; expected a jobcast project root")
        return root
    here = (start or Path.cwd()).resolve()
    for cand in (here, *here.parents):
        if all((cand / m).is_file() for m in PROJECT_MARKERS):
            return cand
    raise ConfigError(
        f"{here}: not inside a jobcast project (no parent holds {' and '.join(PROJECT_MARKERS)}); "
        "cd into the checkout or set JOBCAST_HOME"
    )


def _default_port(root: Path) -> int:
    # Deterministic per checkout, so two checkouts on one machine do not collide by default.
    digest = hashlib.sha1(str(root).encode()).digest()
    return 54000 + int.from_bytes(digest[:2], "big") % 1000


@dataclass(frozen=True)
class Settings:
    root: Path
    data_dir: Path
    models_dir: Path
    reports_dir: Path
    state_dir: Path  # generated local state: PostgreSQL cluster, logs
    database_url: str | None  # None: use the project-local cluster
    pg_port: int
    pg_bindir: str | None
    spark_master: str
    spark_conf: dict[str, str] = field(default_factory=dict)
    source_schema: str = "app"
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def metrics_dir(self) -> Path:
        """DVC metrics of training runs, next to the models they describe (models_dir's parent / metrics): the
        checkout's metrics/ by default, and a run with another JOBCAST_MODELS_DIR (a test, a bench) never writes
        into the checkout's."""
        return self.models_dir.parent / "metrics"

    @classmethod
    def load(cls, root: Path | None = None) -> "Settings":
        root = root or find_project_root()
        env = os.environ

        def path(name: str, default: Path) -> Path:
            value = env.get(name)
            return Path(value).expanduser().resolve() if value else default

        try:
            port = int(env.get("JOBCAST_PG_PORT") or _default_port(root))
        except ValueError as exc:
            raise ConfigError(f"JOBCAST_PG_PORT={env['JOBCAST_PG_PORT']!r}: expected an integer port") from exc
        spark_conf = {}
        for item in filter(None, (env.get("JOBCAST_SPARK_CONF") or "").split(",")):
            key, sep, value = item.partition("=")
            if not sep:
                raise ConfigError(f"JOBCAST_SPARK_CONF item {item!r}: expected key=value")
            spark_conf[key.strip()] = value.strip()
        state_dir = path("JOBCAST_STATE_DIR", root / ".jobcast")
        use_digest_cache(state_dir / "file-digests.sqlite")
        return cls(
            root=root,
            data_dir=path("JOBCAST_DATA_DIR", root / "data"),
            models_dir=path("JOBCAST_MODELS_DIR", root / "models"),
            reports_dir=path("JOBCAST_REPORTS_DIR", root / "reports"),
            state_dir=state_dir,
            database_url=env.get("JOBCAST_DATABASE_URL") or None,
            pg_port=port,
            pg_bindir=env.get("JOBCAST_PG_BINDIR") or None,
            spark_master=env.get("JOBCAST_SPARK_MASTER", "local[*]"),
            spark_conf=spark_conf,
            source_schema=env.get("JOBCAST_SOURCE_SCHEMA", "app"),
            params=_merge(load_params(root / "params.yaml"),
                          load_params(path("JOBCAST_PARAMS_OVERRIDE", root / "params.yaml")) if env.get("JOBCAST_PARAMS_OVERRIDE") else {}),
        )

    def param_number(self, dotted: str, kind: type = float) -> Any:
        """A numeric param: `kind` (int or float) of its value, or a ConfigError naming the key and the value."""
        value = self.param(dotted)
        try:
            if isinstance(value, bool):
                raise TypeError("a boolean")
            return kind(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"params.yaml: {dotted} = {value!r}: expected {'an integer' if kind is int else 'a number'}") from exc

    def param(self, dotted: str) -> Any:
        node: Any = self.params
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(f"params.yaml: missing {dotted!r}")
            node = node[part]
        return node


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """params.yaml with JOBCAST_PARAMS_OVERRIDE (a YAML file of the keys to change) merged over it, key by key."""
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_params(path: Path) -> dict[str, Any]:
    import yaml

    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    with path.open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at top level")
    return data

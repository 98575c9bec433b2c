"""Where the node cache lives and how big it may grow: the one place that reads env vars and the config file.

Precedence, highest first: the argument given to ``fastload.open``, the environment
(``FASTLOAD_CACHE_DIR``, ``FASTLOAD_CACHE_LIMIT``), the config file (``$FASTLOAD_CONFIG``, else
``~/.config/fastload/config.toml``, table ``[cache]`` with keys ``dir`` and ``limit``), then the
defaults (``~/.cache/fastload``, no limit).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from .._sizes import parse_size
from ..errors import ConfigError

ENV_DIR = "FASTLOAD_CACHE_DIR"
ENV_LIMIT = "FASTLOAD_CACHE_LIMIT"
ENV_CONFIG = "FASTLOAD_CONFIG"
WINDOW_SHARDS = 16  # the prefetch window's defaults: 16 shards or 2 GB ahead, whichever comes first
WINDOW_BYTES = 2 << 30


@dataclass(frozen=True, kw_only=True)
class CacheConfig:
    """The node cache's directory and byte limit (``None``: bounded only by the disk)."""

    cache_dir: Path
    cache_limit: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "cache_dir", Path(os.path.expanduser(os.fspath(self.cache_dir))))
        if self.cache_limit is not None:
            object.__setattr__(self, "cache_limit", parse_size(self.cache_limit, what="cache_limit"))

    @classmethod
    def resolve(cls, *, cache_dir: str | os.PathLike | None = None, cache_limit: int | str | None = None,
                environ: Mapping[str, str] | None = None) -> "CacheConfig":
        """Fill what the caller left out from the environment, then the config file, then defaults."""
        env = os.environ if environ is None else environ
        file_cfg = _read_config_file(env)
        if cache_dir is None:
            cache_dir = env.get(ENV_DIR) or file_cfg.get("dir") or Path.home() / ".cache" / "fastload"
        if cache_limit is None:
            cache_limit = env.get(ENV_LIMIT) or file_cfg.get("limit")
        if cache_limit in ("", "none", "None"):
            cache_limit = None
        return cls(cache_dir=cache_dir, cache_limit=cache_limit)


@dataclass(frozen=True, kw_only=True)
class PrefetchWindow:
    """How far ahead of the slowest reader the prefetcher keeps shards: at most ``shards`` shards
    and ``bytes`` bytes (whichever is reached first; the cache limit may shrink it further).

    ``fastload.open(prefetch_window=...)`` takes an int (a number of shards, the byte bound left
    at its default), a size string such as ``"4GB"`` (bytes, the shard bound left at its default)
    or None (both defaults).
    """

    shards: int = WINDOW_SHARDS
    bytes: int = WINDOW_BYTES
    option: int | str | None = None  # what the user gave, so a worker reopens with the same

    def __post_init__(self) -> None:
        if self.shards < 1 or self.bytes < 1:
            raise ValueError(f"prefetch_window must cover at least one shard and one byte, got "
                             f"{self.shards} shards, {self.bytes} bytes")

    @classmethod
    def parse(cls, value: int | str | None) -> "PrefetchWindow":
        if value is None:
            return cls()
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise TypeError(f"prefetch_window must be a number of shards (int) or a size such as '4GB', "
                            f"not {value!r}")
        if isinstance(value, int):
            return cls(shards=value, option=value)
        return cls(bytes=parse_size(value, what="prefetch_window"), option=value)


def _read_config_file(env: Mapping[str, str]) -> dict:
    explicit = env.get(ENV_CONFIG)
    path = Path(explicit) if explicit else Path.home() / ".config" / "fastload" / "config.toml"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if explicit:
            raise FileNotFoundError(f"{ENV_CONFIG}={explicit} names a config file that does not exist") from None
        return {}
    except (OSError, UnicodeDecodeError) as exc:  # unreadable, a directory, not UTF-8
        raise ConfigError(f"cannot read the config file {path}: {exc}; fix or remove it, or set "
                          f"{ENV_CONFIG} to another file") from None
    try:
        table = tomllib.loads(text).get("cache", {})
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML ({exc})") from None
    if not isinstance(table, dict) or set(table) - {"dir", "limit"}:
        raise ConfigError(f"config file {path}: [cache] takes only 'dir' and 'limit', got {sorted(table)}")
    if "dir" in table and not (isinstance(table["dir"], str) and table["dir"]):
        raise ConfigError(f"config file {path}: [cache] dir must be a non-empty string, got {table['dir']!r}")
    return table

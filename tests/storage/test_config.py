"""Cache settings: arguments over environment over config file over defaults; bad values named."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastload.storage.config import CacheConfig


def test_precedence(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text('[cache]\ndir = "/from/file"\nlimit = "3GB"\n')
    env = {"FASTLOAD_CONFIG": str(cfg)}
    assert CacheConfig.resolve(environ=env) == CacheConfig(cache_dir="/from/file", cache_limit=3 * 10**9)
    env.update(FASTLOAD_CACHE_DIR="/from/env", FASTLOAD_CACHE_LIMIT="1GiB")
    assert CacheConfig.resolve(environ=env) == CacheConfig(cache_dir="/from/env", cache_limit=2**30)
    got = CacheConfig.resolve(cache_dir=tmp_path, cache_limit="200GB", environ=env)
    assert got.cache_dir == tmp_path and got.cache_limit == 200 * 10**9


def test_defaults_without_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    got = CacheConfig.resolve(environ={})
    assert got.cache_dir == tmp_path / ".cache" / "fastload" and got.cache_limit is None


def test_bad_values_are_named(tmp_path):
    with pytest.raises(ValueError, match="cache_limit"):
        CacheConfig.resolve(cache_dir=tmp_path, cache_limit="lots", environ={})
    missing = tmp_path / "nope.toml"
    with pytest.raises(FileNotFoundError, match="FASTLOAD_CONFIG"):
        CacheConfig.resolve(environ={"FASTLOAD_CONFIG": str(missing)})
    bad = tmp_path / "bad.toml"
    bad.write_text("[cache]\nsize = 3\n")
    with pytest.raises(ValueError, match="only 'dir' and 'limit'"):
        CacheConfig.resolve(environ={"FASTLOAD_CONFIG": str(bad)})
    assert isinstance(CacheConfig(cache_dir="~/x").cache_dir, Path)

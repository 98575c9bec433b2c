"""Cache settings: arguments over environment over config file over defaults; bad values named."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastload.errors import ConfigError, FastloadError
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


def test_an_unreadable_config_file_is_a_config_error_naming_it(tmp_path):
    """A directory where the file should be, bytes that are not UTF-8, invalid TOML, a dir that is
    not a string: each a ConfigError (a FastloadError) naming the file, never a bare OSError."""
    folder = tmp_path / "config-folder.toml"
    folder.mkdir()
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes('[cache]\ndir = "/données"\n'.encode("latin-1"))
    broken = tmp_path / "broken.toml"
    broken.write_text("[cache\n")
    number = tmp_path / "number.toml"
    number.write_text("[cache]\ndir = 3\n")
    for path, reason in [(folder, "cannot read"), (latin1, "cannot read"), (broken, "not valid TOML"),
                         (number, "non-empty string")]:
        with pytest.raises(ConfigError, match=reason) as info:
            CacheConfig.resolve(environ={"FASTLOAD_CONFIG": str(path)})
        assert str(path) in str(info.value) and isinstance(info.value, FastloadError)

"""The documentation tells the truth: every configuration snippet in the README, in docs/
and under etc/ loads as written with the options it names, and what it cites exists."""

import configparser
import pathlib
import re

import pytest
from oslo_config import cfg
from oslo_log import log as logging

from evs_driver import conf as evs_conf
from evs_driver.conf.opts import backend_opts

ROOT = pathlib.Path(__file__).resolve().parents[2]
SPECIAL = {"DEFAULT", "backend_defaults"}
# Options of Cinder's own that the README's cinder.conf snippet sets (not ours to register).
CINDER_OPTIONS = {"volume_driver"}


def _snippets() -> list[tuple[str, str]]:
    found = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text()
        for number, block in enumerate(re.findall(r"```ini\n(.*?)```", text, re.S), 1):
            found.append((f"{doc.name} snippet {number}", block))
    for example in sorted((ROOT / "etc").rglob("*.conf.example")):
        found.append((str(example.relative_to(ROOT)), example.read_text()))
    return found


@pytest.mark.parametrize("where, text", _snippets(), ids=[w for w, _ in _snippets()])
def test_every_config_snippet_loads_as_written(tmp_path, where, text):
    path = tmp_path / "snippet.conf"
    path.write_text(text)
    conf = cfg.ConfigOpts()
    evs_conf.register_opts(conf)
    logging.register_options(conf)
    conf(["--config-file", str(path)], project="evs_driver", default_config_files=[])
    evs_conf.validate(conf)
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.read_string(text)
    known_default = set(conf)  # [DEFAULT] option names (and group names)
    backend = {opt.dest for opt in backend_opts()}
    for key in parser.defaults():
        assert key in known_default, f"{where}: [DEFAULT] {key} is no option"
    for group in parser.sections():
        if group in SPECIAL - {"DEFAULT"}:
            names = backend
        else:
            evs_conf.BackendConf(conf, group).validate()  # every value parses, no # comments
            names = backend | CINDER_OPTIONS | {opt.dest for opt in evs_conf.DEFAULT_OPTS}
        for key in parser[group]:
            if key in parser.defaults():
                continue
            assert key in names, f"{where}: [{group}] {key} is no option"


def test_the_readme_cites_files_that_exist():
    text = (ROOT / "README.md").read_text()
    for cited in re.findall(r"\]\(((?:docs|etc|bench|tools|tests)/[^)#]+)\)", text):
        assert (ROOT / cited).exists(), cited
    for cited in re.findall(r"`((?:etc|tools|docs|bench)/[\w./-]+)`", text):
        assert (ROOT / cited).exists(), cited
    assert "../shared" not in text, "users have no ../shared: the README must stand alone"


def test_the_systemd_unit_starts_the_declared_service():
    unit = (ROOT / "etc" / "systemd" / "evs-volume.service").read_text()
    start = re.search(r"^ExecStart=(\S+)", unit, re.M).group(1)
    setup = (ROOT / "setup.cfg").read_text()
    assert pathlib.Path(start).name + " = evs_driver.cmd.volume_service:main" in setup
    assert "UMask=0077" in unit

"""Every real compose file of the shared corpus loads, or is refused naming what is unsupported."""

from __future__ import annotations

from pathlib import Path

import pytest

from composer.config.loader import LoadOptions, load_stack
from composer.config.serialize import project_to_dict, to_yaml
from composer.errors import ComposerError, StackError
from tests.conftest import CORPUS

# Files that must fail, and a phrase their error must contain: each is a fixture of a
# deliberate error, or uses a feature composer refuses by name.
EXPECTED_FAILURES = {
    "awesome-compose/wasmedge-kafka-mysql/compose.yml": "runtime: not supported ('io.containerd.wasmedge.v1')",
    "awesome-compose/wasmedge-mysql-nginx/compose.yml": "runtime: not supported ('io.containerd.wasmedge.v1')",
    "compose-go/loader/testdata/compose-depends-on-cycle.yaml": "dependency cycle between services service1, service2, service3",
    "compose-go/loader/testdata/compose-include-cycle.yaml": "include cycle",
    "compose-go/schema/using-variables.yaml": "generic_resources: not supported",
    # A fixture whose env_file list names a file that the fixture directory does not have.
    "compose-go/cli/testdata/env-file/compose-with-env-files.yaml": "second-env does not exist",
    # Fragments meant to be extended or merged: on their own a service lacks an image.
    "compose-go/extracted-from-go-tests/anchors-override-extends.yaml": "a service needs an image or a build",
    "compose-go/extracted-from-go-tests/override-depends_on.2-override.yaml": "a service needs an image or a build",
    "compose-go/loader/testdata/extends/base.yaml": "a service needs an image or a build",
    # Meant to be included from ../project-directory.yaml, which sets its project directory.
    "compose-go/loader/testdata/include/dir/compose.yaml": "extra.env does not exist",
    # The fixture's driver keys are "${HOME}": bridge and local are the only drivers here.
    "compose-go/extracted-from-go-tests/interpolation-basic.yaml": "network driver '/home/tester' is not supported",
    # .env names COMPOSE_FILE=compose-with-env-file.yaml, which does not exist: only with -f
    # does this directory load; see the test below.
}

FILES = sorted(
    str(p.relative_to(CORPUS))
    for p in CORPUS.rglob("*")
    if p.suffix in (".yaml", ".yml") and p.is_file()
)

pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"no corpus at {CORPUS}")


@pytest.mark.parametrize("name", FILES)
def test_corpus_file_loads_or_names_what_is_unsupported(name: str, tmp_path: Path) -> None:
    path = CORPUS / name
    environ = {"HOME": "/home/tester"}
    options = LoadOptions(files=(path,), environ=environ, working_directory=path.parent)
    expected = EXPECTED_FAILURES.get(name)
    if expected is None:
        normal = project_to_dict(load_stack(options).project)
        again = tmp_path / "normal.yaml"
        again.write_text(to_yaml(normal))
        reloaded = load_stack(LoadOptions(files=(again,), environ=environ))
        assert project_to_dict(reloaded.project) == normal
        return
    with pytest.raises(StackError) as info:
        load_stack(options)
    assert expected in str(info.value)


def test_most_of_the_corpus_loads() -> None:
    loaded = len(FILES) - len(EXPECTED_FAILURES)
    assert loaded >= 35, f"only {loaded} of {len(FILES)} corpus files load"


def test_merged_corpus_pairs_give_the_documented_results() -> None:
    base = CORPUS / "compose-go/extracted-from-go-tests"
    reset = load_stack(
        LoadOptions(files=(base / "reset.1-base.yml", base / "reset.2-override.yml"), environ={})
    )
    foo = reset.project.services["foo"]
    assert (foo.image, foo.build, foo.environment) == ("foo", None, {})
    depends = load_stack(
        LoadOptions(
            files=(
                base / "override-depends_on.1-base.yaml",
                base / "override-depends_on.2-override.yaml",
            ),
            environ={},
        )
    )
    dep = (depends.project.services["test"].depends_on or {})["foo"]
    assert (dep.condition, dep.required) == ("service_healthy", False)


def test_compose_file_in_dotenv_that_does_not_exist_is_a_clear_error() -> None:
    directory = CORPUS / "compose-go/cli/testdata/env-file"
    with pytest.raises(ComposerError, match=r"compose-with-env-file\.yaml does not exist"):
        load_stack(LoadOptions(environ={}, working_directory=directory))

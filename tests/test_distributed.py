"""Until distributed training is built, a launch with several processes is refused before anything is written
(each process would otherwise run the whole recipe into the same folder)."""
import pytest

from alembert import api
from alembert.errors import AlembertError


def test_several_processes_are_refused_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.chdir(tmp_path)  # where a run would write outputs/
    with pytest.raises(AlembertError, match="several processes\\) is not supported yet"):
        api.distill("no-such-recipe.yaml")
    assert list(tmp_path.iterdir()) == []

"""The docs' figures: ``benchmarks/plots.py`` reads the result tables the benchmarks wrote and draws each one."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import plots  # noqa: E402


def test_tables_and_numbers_are_read_back_as_written():
    text = "intro\n\n| method | accuracy % |\n|---|---|\n| `concat` | 91.6 ± 0.4 |\n| `late` | 0.551 |\n\nafter\n"
    [(header, rows)] = plots.tables(text)
    assert header == ["method", "accuracy %"] and rows == [["`concat`", "91.6 ± 0.4"], ["`late`", "0.551"]]
    assert plots.number(rows[0][1]) == (91.6, 0.4) and plots.number(rows[1][1]) == (0.551, 0.0)
    assert plots.number("2 of 5 models")[0] != plots.number("2 of 5 models")[0]  # nan: not a number cell


@pytest.mark.parametrize("build", plots.FIGURES_FROM_TABLES, ids=lambda f: f.__name__)
def test_every_figure_draws_from_the_current_docs(build):
    fig, page, after, name, caption = build()
    assert (plots.DOCS / page).is_file() and f"<!-- {after}:end -->" in (plots.DOCS / page).read_text()
    assert fig.axes and all(ax.get_title() or ax.get_xlabel() or ax.get_ylabel() for ax in fig.axes)
    assert f"figures/{name}.png" in (plots.DOCS / page).read_text(), "rerun python benchmarks/plots.py"
    assert (plots.FIGURES / f"{name}.png").is_file()


def test_embedding_places_the_figure_after_its_table_once(tmp_path, monkeypatch):
    page = tmp_path / "page.md"
    page.write_text("# t\n\n<!-- bench:start -->\n| a |\n|---|\n| 1 |\n<!-- bench:end -->\n\nprose\n")
    monkeypatch.setattr(plots, "DOCS", tmp_path)
    for _ in range(2):
        plots.embed("page.md", "bench", "fig", "alt", "Caption.")
    text = page.read_text()
    assert text.count("figures/fig.png") == 1 and text.index("bench:end") < text.index("fig.png") < text.index("prose")
    with pytest.raises(KeyError, match="no section 'other'"):
        plots.embed("page.md", "other", "fig2", "alt", "Caption.")

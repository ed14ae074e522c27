"""The Data page's "folder on this server" field reads only the allowed data roots, links resolved first."""

from __future__ import annotations

import os
import pathlib

import pytest
from streamlit.testing.v1 import AppTest

from nas_core import studio
from nas_core.data.uploads import FolderNotAllowed, allowed_roots, check_server_folder
from nas_core.errors import UserError
from tests.data.b2_fixtures import make_generic

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def layout(tmp_path, monkeypatch):
    """db in <tmp>/app (the data directory), a data set inside it, a private folder outside it."""
    app = tmp_path / "app"
    app.mkdir()
    monkeypatch.setenv("EQUINAS_DB", str(app / "app.db"))
    monkeypatch.delenv("EQUINAS_DATA_ROOTS", raising=False)
    monkeypatch.delenv("EQUINAS_DEFAULT_DATASET", raising=False)
    monkeypatch.delenv("EQUINAS_UPLOADS_DIR", raising=False)
    inside = make_generic(app / "sets" / "mine", n=6)
    private = make_generic(tmp_path / "private" / "secret_set", n=6)
    return {"app": app, "inside": inside, "private": private, "tmp": tmp_path}


def test_a_folder_inside_the_data_directory_is_allowed(layout):
    assert studio.server_folder(str(layout["inside"])) == layout["inside"].resolve()


def test_a_folder_outside_is_refused_with_how_to_allow_it(layout):
    with pytest.raises(FolderNotAllowed) as info:
        studio.server_folder(str(layout["private"]))
    msg = str(info.value)
    assert "outside the data folders" in msg and "--data-root" in msg and "EQUINAS_DATA_ROOTS" in msg
    for path in ("/etc", "/root", "/", str(layout["app"] / ".." / "private" / "secret_set")):
        with pytest.raises(FolderNotAllowed):
            studio.server_folder(path)


def test_a_symlink_out_of_the_data_directory_is_refused(layout):
    link = layout["app"] / "sets" / "shortcut"
    link.symlink_to(layout["private"], target_is_directory=True)
    with pytest.raises(FolderNotAllowed, match="resolves to"):
        studio.server_folder(str(link))
    etc = layout["app"] / "etc_link"
    etc.symlink_to("/etc", target_is_directory=True)
    with pytest.raises(FolderNotAllowed):
        studio.server_folder(str(etc))


def test_a_link_inside_an_allowed_folder_that_points_out_is_refused(layout):
    (layout["inside"] / "pics" / "leak.jpg").symlink_to(layout["private"] / "pics" / "img_000.jpg")
    with pytest.raises(FolderNotAllowed, match="is a link to"):
        studio.server_folder(str(layout["inside"]))
    (layout["inside"] / "pics" / "leak.jpg").unlink()
    (layout["inside"] / "pics" / "more").symlink_to(layout["inside"] / "pics", target_is_directory=True)
    assert studio.server_folder(str(layout["inside"]))  # a link that stays inside is fine


def test_the_setting_and_data_root_allow_more_folders(layout, monkeypatch):
    monkeypatch.setenv("EQUINAS_DATA_ROOTS", os.pathsep.join([str(layout["tmp"] / "private"), "/nonexistent"]))
    assert studio.server_folder(str(layout["private"])) == layout["private"].resolve()
    roots = allowed_roots(layout["app"] / "app.db")
    assert layout["app"].resolve() in roots and (layout["tmp"] / "private").resolve() in roots
    with pytest.raises(UserError, match="does not exist"):
        check_server_folder(str(layout["app"] / "missing"), roots)
    with pytest.raises(UserError, match="not a folder"):
        check_server_folder(str(layout["inside"] / "meta.csv"), roots)


def test_serve_passes_data_roots_to_the_app(layout, monkeypatch):
    from nas_core import store_cli

    seen = {}

    def fake_app(*a, **k):
        seen.update(k.get("env", {}))
        raise SystemExit(0)

    monkeypatch.setattr(store_cli.subprocess, "Popen", fake_app)
    with pytest.raises(SystemExit):
        store_cli.serve(str(layout["app"] / "app.db"), worker=False, data_roots=[str(layout["tmp"] / "private")],
                        app_cmd=["true"])
    assert str((layout["tmp"] / "private").resolve()) in seen["EQUINAS_DATA_ROOTS"]
    with pytest.raises(UserError, match="not a folder"):
        store_cli.serve(str(layout["app"] / "app.db"), worker=False, data_roots=["/nonexistent"], app_cmd=["true"])


def test_the_data_page_refuses_an_outside_folder(layout):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("pages/data.py").run()
    at.radio(key="data_source").set_value("Folder on this server").run()
    at.text_input(key="data_folder").input(str(layout["private"])).run()
    assert not at.exception
    assert any("outside the data folders" in e.value for e in at.error)
    assert not at.get("button") or all(b.key != "inspect" for b in at.button)
    at.text_input(key="data_folder").input(str(layout["inside"])).run()
    assert not at.exception and not at.error
    assert any(b.key == "inspect" for b in at.button)

"""The table manager the app uses starts recovery at once, without Faust's 1 s pause."""

from quotacache.tables.manager import PromptTableManager


async def test_the_apps_table_manager_starts_recovery_without_pausing(app, monkeypatch):
    manager = app.tables
    assert isinstance(manager, PromptTableManager)
    steps = []

    async def record(step, *args):
        steps.append(step)

    monkeypatch.setattr(manager, "sleep", lambda seconds: record(f"sleep {seconds}"))
    monkeypatch.setattr(manager, "_update_channels", lambda: record("channels"))
    monkeypatch.setattr(manager.recovery, "start", lambda: record("recovery"))
    await manager.on_start()
    assert steps == ["channels", "recovery"]

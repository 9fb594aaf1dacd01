"""The key footer, rebuilt only when the keys it shows change."""

from __future__ import annotations

from typing import Hashable

from textual.widgets import Footer


class KeysFooter(Footer):
    """Textual's footer rebuilds all its key widgets each time bindings may have changed: on every
    focus change and every ``refresh_bindings``, one rebuild queued per call (six while the replay
    app opens at the end of a big session, 0.05-0.1 s). This one rebuilds only when what it would
    show differs from what it shows."""

    _shown: Hashable = None

    def _showing(self) -> Hashable:
        """What ``compose`` would show: each shown binding's key, label, action, state and tooltip."""
        if not self._bindings_ready:
            return None
        get_display = self.app.get_key_display
        return (self.compact, self.show_command_palette, tuple(
            (binding.key, get_display(binding), binding.description, binding.action, enabled, tooltip)
            for _, binding, enabled, tooltip in self.screen.active_bindings.values() if binding.show))

    async def recompose(self) -> None:
        showing = self._showing()
        if showing is not None and showing == self._shown:
            return
        self._shown = showing
        await super().recompose()

"""What the app's tabs share: the Lab (models, gallery and answers, from the library) and the
app's own settings. No gradio and no model rules here."""

from dataclasses import dataclass, field

from artlab.curator import CuratorGate
from artlab.lab import Lab


@dataclass
class AppContext:
    lab: Lab = field(default_factory=Lab)
    kiosk: bool = False
    idle_minutes: float = 3.0             # kiosk: a visitor's uploads are forgotten after this
    max_upload_mb: int = 20
    gate: CuratorGate = field(default_factory=CuratorGate)   # the curator password, throttled per client

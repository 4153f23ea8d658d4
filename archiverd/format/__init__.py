"""The segment format: documents -> blocks -> record stream -> frames -> QR symbols -> FFV1 video.

No MongoDB and no daemon here; docs/FORMAT.md specifies every byte."""

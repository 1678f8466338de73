"""Model families; importing this package registers every variant."""

from humanmatting.models import indexnet, likeunet, u2net  # noqa: F401

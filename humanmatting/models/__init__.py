"""Model families; importing this package registers every variant."""

from humanmatting.models import likeunet  # noqa: F401

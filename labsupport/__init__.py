"""labsupport: the helper package of Mail Labs."""
from .lab import Lab, start, current

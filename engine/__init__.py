"""The container mechanism: images, root filesystems, runtime, networking.

engine/ knows how to make a thing exist in the kernel; it never imports composer/.
"""

__all__: list[str] = []

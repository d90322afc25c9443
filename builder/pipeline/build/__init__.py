"""The engine: runs a build on a local process pool or on Ray, and resumes it.

- ``build``    orchestration: units -> pool -> text stage -> writers -> card;
- ``pools``    where units run (``--engine local|ray``);
- ``journal``  work groups, the journal that makes a build resumable, publishing.
"""

from builder.pipeline.build.build import BUILD_JSON, BuildError, BuildOptions, Progress, build, sha256_file

__all__ = ["BUILD_JSON", "BuildError", "BuildOptions", "Progress", "build", "sha256_file"]

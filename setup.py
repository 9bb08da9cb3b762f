"""Package layout (the rest of the metadata is in pyproject.toml).

The servers live in top-level folders — `gateway/`, `embedder/`, `loadgen/` — so the tree reads as a map
of the architecture, but they install as `searchgw.gateway`, `searchgw.embedder` and `searchgw.loadgen`:
generic top-level names like `gateway` collide with other distributions.
"""

from setuptools import find_packages, setup

_NESTED = ("gateway", "embedder", "loadgen")

packages = find_packages(include=["searchgw", "searchgw.*"])
package_dir = {"searchgw": "searchgw"}
for folder in _NESTED:
    package_dir[f"searchgw.{folder}"] = folder
    packages += [f"searchgw.{folder}"] + [f"searchgw.{folder}.{sub}" for sub in find_packages(where=folder)]

setup(packages=packages, package_dir=package_dir)

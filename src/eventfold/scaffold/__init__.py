"""``eventfold init PATH``: a new application to start from. Its events, a
decider with its commands, a projection, a service definition, given/when/
then tests and a test of the services over HTTP, and a README with its two
commands (``python -m pytest``, ``eventfold serve --app …``).

The files are the templates in ``template/`` (shipped in the package), with
``{{name}}`` (the project), ``{{package}}`` (its Python package: a folder
called ``PACKAGE`` takes this name) and ``{{eventfold_version}}`` filled in;
``gitignore`` becomes ``.gitignore``."""

from eventfold.scaffold.project import check_package, package_name, scaffold

__all__ = ["check_package", "package_name", "scaffold"]

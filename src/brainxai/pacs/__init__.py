"""PACS round trip over DICOMweb: retrieve a study (WADO-RS), analyse its brain MR series, store the results (STOW-RS).

- :mod:`~.credentials`: user and password from the environment or a file (never the command line);
- :mod:`~.client`: a thin wrapper over ``dicomweb-client`` whose failures are one :class:`PacsError`;
- :mod:`~.service`: one study in, its results stored back into it as one STOW request;
- :mod:`~.watch`: poll Orthanc's ``/changes`` and analyse each new MR series once, across restarts.

Layer: above :mod:`brainxai.pipeline`, below the web app and the CLI.
"""

from brainxai.pacs.client import PacsClient, PacsError
from brainxai.pacs.credentials import Credentials, load_credentials

__all__ = ["Credentials", "PacsClient", "PacsError", "load_credentials"]

"""Settings for every test run, unit tests and notebooks alike.

Labs started during a test run (in the test process or in notebook kernels, which
inherit this environment) keep their state in a temporary folder, never in the user's
own lab state, and each pytest worker has its own.
"""

import os
import tempfile

if "MAIL_LABS_HOME" not in os.environ or os.environ.get("MAIL_LABS_TEST_HOME_SET") != "1":
    os.environ["MAIL_LABS_HOME"] = tempfile.mkdtemp(prefix="mail-labs-test-")
    os.environ["MAIL_LABS_TEST_HOME_SET"] = "1"

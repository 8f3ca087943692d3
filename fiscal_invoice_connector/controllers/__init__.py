from . import webhooks
from . import portal

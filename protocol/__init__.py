"""The wire contract of the pose service: pydantic messages shared by server and clients."""

from protocol.messages import HealthPublic, ModelPublic, ModelsPublic, SkeletonPublic

__all__ = ["HealthPublic", "ModelPublic", "ModelsPublic", "SkeletonPublic"]

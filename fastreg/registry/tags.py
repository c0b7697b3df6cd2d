"""Tags: ``_manifests/tags/<tag>/current/link`` names the manifest a tag points at."""
from __future__ import annotations

from ..api.errors import RegistryError
from ..digest import Digest, InvalidDigest, UnsupportedDigest, parse_digest
from ..storage import layout
from ..storage.driver.base import PathNotFound, StorageDriver


class TagStore:
    def __init__(self, driver: StorageDriver) -> None:
        self.driver = driver

    async def resolve(self, name: str, tag: str) -> Digest:
        try:
            link = await self.driver.get_content(layout.tag_current_link(name, tag))
        except PathNotFound:
            raise RegistryError("MANIFEST_UNKNOWN", {"tag": tag}) from None
        try:
            return parse_digest(link.decode().strip(), allow_blake3=True)
        except (InvalidDigest, UnsupportedDigest, UnicodeDecodeError):
            raise RegistryError("UNKNOWN", f"corrupt tag link for {name}:{tag}") from None

    async def tag(self, name: str, tag: str, d: Digest) -> None:
        text = str(d).encode()
        # The index entry first, then the current link: a reader never sees a tag whose
        # history does not know its target (Distribution writes them in this order too).
        await self.driver.put_content(layout.tag_index_link(name, tag, d.algorithm, d.hex), text)
        await self.driver.put_content(layout.tag_current_link(name, tag), text)

    async def untag(self, name: str, tag: str) -> None:
        try:
            await self.driver.stat(layout.tag_current_link(name, tag))
            await self.driver.delete(layout.tag_dir(name, tag))
        except PathNotFound:
            raise RegistryError("MANIFEST_UNKNOWN", {"tag": tag}) from None

    async def all(self, name: str) -> list[str]:
        """Every tag of `name`, sorted; NAME_UNKNOWN if the repository does not exist."""
        try:
            names = await self.driver.list(layout.tags_dir(name))
        except PathNotFound:
            try:
                await self.driver.stat(layout.repo(name))
            except PathNotFound:
                raise RegistryError("NAME_UNKNOWN", {"name": name}) from None
            return []
        names.sort()
        return names

    async def pointing_at(self, name: str, d: Digest) -> list[str]:
        text = str(d)
        out = []
        for tag in await self.all(name):
            try:
                if (await self.driver.get_content(layout.tag_current_link(name, tag))).decode().strip() == text:
                    out.append(tag)
            except PathNotFound:
                continue
        return out

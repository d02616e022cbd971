"""The Employee Directory in the browser, on the instance the stack starts (its metadata service hands the
app EmployeeWebAppRole's credentials): sign in through the IdP, list and search the employees, upload a
photo as hr, and the status page's denied action. Keyboard only, fields by their labels, every title checked."""

from __future__ import annotations

import re
import struct
import zlib

from playwright.sync_api import Page, expect

from tests.browser.journey import IDP_TITLE, check_page, shoot, tab_to, type_credentials

APP_TITLE = " - Employee Directory"


def png(width: int = 8, height: int = 8, rgb: tuple[int, int, int] = (200, 30, 60)) -> bytes:
    """A real PNG image (the browser must be able to draw it)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def sign_in_to_the_app(page: Page, urls: dict, username: str) -> None:
    """From the app's address, through the IdP's sign-in page, back to the list of employees."""
    page.goto(urls["EMPLOYEE_DIRECTORY_URL"] + "/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert page.url.startswith(urls["IDP_URL"] + "/")  # the company's IdP, another site
    check_page(page, "Sign in" + IDP_TITLE)
    type_credentials(page, username)
    expect(page).to_have_url(urls["EMPLOYEE_DIRECTORY_URL"] + "/")
    expect(page.get_by_role("heading", name="Employees", level=1)).to_be_visible()
    check_page(page, "Employees" + APP_TITLE)


def open_link(page: Page, name: str) -> None:
    link = page.get_by_role("link", name=name, exact=True)
    tab_to(page, link)
    page.keyboard.press("Enter")


def test_sign_in_through_the_idp_and_list_and_search_the_employees(page, urls):
    sign_in_to_the_app(page, urls, "bob")
    people = page.locator(".person-name")
    expect(people).to_contain_text(
        ["Alice Anderson", "Bob Brown", "Carol Chen", "Dave Diaz", "Erin Evans", "Grace Green", "Heidi Hoffmann"]
    )
    expect(page.get_by_role("navigation", name="Main")).to_contain_text("Bob Brown")
    shoot(page, "directory-employees")

    field = page.get_by_label("Search employees", exact=True)
    tab_to(page, field)
    page.keyboard.type("finance")
    page.keyboard.press("Enter")
    expect(people).to_have_text(["Carol Chen"])
    expect(page.get_by_text("1 of 7 match “finance”.")).to_be_visible()
    check_page(page, "Employees" + APP_TITLE)

    open_link(page, "Carol Chen")
    expect(page.get_by_role("heading", name="Carol Chen", level=1)).to_be_visible()
    check_page(page, "Carol Chen" + APP_TITLE)
    expect(page.get_by_text("Only members of hr change photos.")).to_be_visible()
    expect(page.get_by_label("New photo")).to_have_count(0)  # the app's rule: bob is not in hr


def test_hr_uploads_a_photo(page, urls, tmp_path):
    sign_in_to_the_app(page, urls, "heidi")
    open_link(page, "Alice Anderson")
    expect(page.get_by_role("heading", name="Alice Anderson", level=1)).to_be_visible()
    check_page(page, "Alice Anderson" + APP_TITLE)
    photo = page.get_by_role("img", name="Photo of Alice Anderson")
    expect(photo).to_have_js_property("complete", True)
    assert photo.evaluate("image => image.naturalWidth") == 96  # the seeded badge (SVG, 96 px)

    picture = tmp_path / "alice.png"
    picture.write_bytes(png(width=40, height=30))
    field = page.get_by_label("New photo", exact=True)
    tab_to(page, field)  # reachable with the keyboard; the file itself comes from the system's picker
    field.set_input_files(picture)
    tab_to(page, page.get_by_role("button", name="Upload photo"))
    page.keyboard.press("Enter")

    expect(page.get_by_role("status")).to_have_text("The new photo of Alice Anderson is saved.")
    check_page(page, "Alice Anderson" + APP_TITLE)
    photo = page.get_by_role("img", name="Photo of Alice Anderson")
    expect(photo).to_have_js_property("complete", True)
    assert photo.evaluate("image => image.naturalWidth") == 40  # the new one, from S3's uploads/
    shoot(page, "directory-photo-uploaded")


def test_the_status_page_shows_the_apps_role_and_a_denied_action(page, urls):
    sign_in_to_the_app(page, urls, "bob")
    open_link(page, "How this app reaches AWS")
    expect(page.get_by_role("heading", name="How this app reaches AWS", level=1)).to_be_visible()
    check_page(page, "How this app reaches AWS" + APP_TITLE)
    expect(page.locator("#caller-arn")).to_have_text(
        re.compile(r"^arn:aws:sts::222222222222:assumed-role/EmployeeWebAppRole/i-[0-9a-f]{17}$")
    )
    expect(page.locator("#expires")).to_contain_text("UTC")
    expect(page.locator("#issued")).to_contain_text("UTC")
    expect(page.locator("#rotations")).to_contain_text("no restart")
    shoot(page, "directory-status")

    button = page.get_by_role("button", name="Try to delete the photos bucket")
    tab_to(page, button)
    page.keyboard.press("Enter")
    result = page.get_by_role("status")
    expect(result.get_by_role("heading", name="Denied: AccessDenied")).to_be_visible()
    expect(result).to_contain_text("s3:DeleteBucket")
    expect(result).to_contain_text("arn:aws:s3:::employee-directory-photos-222222222222")
    check_page(page, "How this app reaches AWS" + APP_TITLE)
    shoot(page, "directory-denied-action")

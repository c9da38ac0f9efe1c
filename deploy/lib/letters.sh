# shellcheck shell=bash
# The data subject's letters as PDF: WeasyPrint needs Pango (with its FreeType/HarfBuzz
# backend) and fonts with every Lithuanian letter (DejaVu); the tests turn the PDFs into PNG
# pages with pdftoppm and read their text with pdftotext (poppler-utils). Sourced by stack.sh;
# deploy/Dockerfile installs the same runtime packages into the image.
LETTER_PACKAGES=(libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core poppler-utils)

# letter_packages_missing: prints the letter packages that are not installed yet.
letter_packages_missing() {
    local p
    for p in "${LETTER_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"
    done
}

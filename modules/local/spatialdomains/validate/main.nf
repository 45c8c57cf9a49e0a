process SPATIALDOMAINS_VALIDATE {
    tag "${samplesheet.name}"
    label 'process_single'

    input:
    tuple path(samplesheet), val(base_dir)    // base_dir: folder that relative paths resolve against ('' = the sheet's)

    output:
    path "samplesheet.valid.csv", emit: csv
    path "versions.yml"         , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    """
    export HOME="\$PWD" XDG_CACHE_HOME="\$PWD/.cache" MPLCONFIGDIR="\$PWD/.cache/matplotlib" NUMBA_CACHE_DIR="\$PWD/.cache/numba"

    # Lists every problem (row, column, reason) on stderr and exits 1; relative paths in the
    # sheet are resolved against the folder of the user's sheet.
    spatialdomains validate-samplesheet ${samplesheet} -o samplesheet.valid.csv ${base_dir ? "--base-dir '${base_dir}'" : ''} ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        spatialdomains: \$(spatialdomains --version)
        python: \$(python3 --version | sed 's/Python //')
    END_VERSIONS
    """

    stub:
    // The stub validates for real (about a second): every later channel is built from its rows.
    def args = task.ext.args ?: ''
    """
    spatialdomains validate-samplesheet ${samplesheet} -o samplesheet.valid.csv ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        spatialdomains: \$(spatialdomains --version)
        python: \$(python3 --version | sed 's/Python //')
    END_VERSIONS
    """
}

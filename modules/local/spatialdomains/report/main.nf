process SPATIALDOMAINS_REPORT {
    tag "${meta.id}"
    label 'process_low'

    input:
    tuple val(meta), path(h5ads), path(metrics), path(tables), path(qc)   // one group: every method x seed, its slices' QC
    val params_json     // the run's parameters, one-line JSON (shown in the run summary)
    val versions_json   // software versions {process: {tool: version}}, one-line JSON

    output:
    tuple val(meta), path("report.html")     , emit: html
    tuple val(meta), path("*.consensus.csv") , emit: consensus
    path "mqc/*_mqc.png"                     , emit: mqc, optional: true   // domain maps for MultiQC
    path "versions.yml"                      , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args   = task.ext.args ?: ''
    def prefix = task.ext.prefix ?: "${meta.id}"
    def files  = { list, flag -> [list].flatten().collect { f -> "${flag} ${f}" }.join(' ') }
    def deg    = [tables].flatten().findAll { f -> f.name.endsWith('.deg.csv') }
    def go     = [tables].flatten().findAll { f -> f.name.endsWith('.go.csv') }
    """
    export HOME="\$PWD" XDG_CACHE_HOME="\$PWD/.cache" MPLCONFIGDIR="\$PWD/.cache/matplotlib" NUMBA_CACHE_DIR="\$PWD/.cache/numba"

    printf '%s\\n' '${params_json.toString().replace("'", "'\\''")}' > params.json
    printf '%s\\n' '${versions_json.toString().replace("'", "'\\''")}' > software_versions.yml

    # The tables are published to <group>/analysis/ beside <group>/report.html: links point there
    spatialdomains report \\
        --group ${meta.id} \\
        ${files(h5ads, '--clustered')} \\
        ${files(metrics, '--metrics')} \\
        ${files(deg, '--deg')} \\
        ${files(go, '--go')} \\
        ${files(qc, '--qc')} \\
        --params params.json \\
        --versions software_versions.yml \\
        --link-prefix analysis/ \\
        --consensus-csv ${prefix}.consensus.csv \\
        --mqc-dir mqc \\
        --threads ${task.cpus} \\
        -o report.html \\
        ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        spatialdomains: \$(spatialdomains --version)
        python: \$(python3 --version | sed 's/Python //')
    END_VERSIONS
    """

    stub:
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    mkdir -p mqc
    touch report.html ${prefix}.consensus.csv mqc/${meta.id}_domains_mqc.png

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        spatialdomains: \$(spatialdomains --version)
        python: \$(python3 --version | sed 's/Python //')
    END_VERSIONS
    """
}

